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
type ClientQueue struct{ a []ClientSend }

// Len is the number of queued sends.
func (h *ClientQueue) Len() int { return len(h.a) }

// Min is the earliest send; the queue must not be empty.
func (h *ClientQueue) Min() ClientSend { return h.a[0] }

func sendLess(x, y ClientSend) bool { return x.T < y.T || (x.T == y.T && x.Client < y.Client) }

// Push queues a send.
func (h *ClientQueue) Push(x ClientSend) {
	h.a = append(h.a, x)
	i := len(h.a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !sendLess(h.a[i], h.a[p]) {
			break
		}
		h.a[i], h.a[p] = h.a[p], h.a[i]
		i = p
	}
}

// Pop removes and returns the earliest send.
func (h *ClientQueue) Pop() ClientSend {
	x := h.a[0]
	n := len(h.a) - 1
	h.a[0] = h.a[n]
	h.a = h.a[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && sendLess(h.a[r], h.a[l]) {
			c = r
		}
		if !sendLess(h.a[c], h.a[i]) {
			break
		}
		h.a[i], h.a[c] = h.a[c], h.a[i]
		i = c
	}
	return x
}
