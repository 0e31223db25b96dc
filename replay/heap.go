package replay

type clientSend struct {
	t      int64
	client int32
}

// clientHeap orders closed-loop sends by time, then client, as sim.Run
// does, so that both drivers pick the same client for the same request.
type clientHeap struct{ a []clientSend }

func (h *clientHeap) len() int        { return len(h.a) }
func (h *clientHeap) min() clientSend { return h.a[0] }
func cless(x, y clientSend) bool      { return x.t < y.t || (x.t == y.t && x.client < y.client) }

func (h *clientHeap) push(x clientSend) {
	h.a = append(h.a, x)
	i := len(h.a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !cless(h.a[i], h.a[p]) {
			break
		}
		h.a[i], h.a[p] = h.a[p], h.a[i]
		i = p
	}
}

func (h *clientHeap) pop() clientSend {
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
		if r := l + 1; r < n && cless(h.a[r], h.a[l]) {
			c = r
		}
		if !cless(h.a[c], h.a[i]) {
			break
		}
		h.a[i], h.a[c] = h.a[c], h.a[i]
		i = c
	}
	return x
}
