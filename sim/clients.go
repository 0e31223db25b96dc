package sim

// ClientSend is a closed-loop client's next send: at T (ns since the run
// started), by client Client.
type ClientSend struct {
	T      int64
	Client int32
}

// ClientQueue orders closed-loop sends by time, then client. The
// simulator and replay both use it, so that both drivers give the same
// request to the same client.
type ClientQueue struct {
	h minHeap[ClientSend, bySendTime]
}

type bySendTime struct{}

func (bySendTime) less(x, y *ClientSend) bool {
	return x.T < y.T || (x.T == y.T && x.Client < y.Client)
}

// Len is the number of queued sends.
func (q *ClientQueue) Len() int { return q.h.len() }

// Min is the earliest send; the queue must not be empty.
func (q *ClientQueue) Min() ClientSend { return *q.h.min() }

// Push queues a send.
func (q *ClientQueue) Push(x ClientSend) { q.h.push(x) }

// Pop removes and returns the earliest send.
func (q *ClientQueue) Pop() ClientSend { return q.h.pop() }
