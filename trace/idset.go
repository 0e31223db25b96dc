package trace

import "math/bits"

// idSet detects duplicate request_ids exactly with memory that stays small
// for the IDs traces really have.
//
// While the IDs seen so far are dense — their range [base, base+64·len(bits))
// is at most 64 slots per ID seen, or under denseMinSlots — they live in a
// bitmap: one bit per slot, so the usual 0..n-1 numbering costs n/8 bytes
// (1.25 MB for 10 M rows) in any order. When the IDs turn out sparse (random
// 64-bit IDs) the set switches for good to a hash set, which costs tens of
// bytes per ID; that is the documented price of checking sparse IDs exactly.
type idSet struct {
	base   int64 // multiple of 64; slot of bits[0] bit 0
	bits   []uint64
	count  int64
	sparse map[int64]struct{}
}

// denseMinSlots lets small traces use the bitmap whatever their IDs look
// like (8 Mi slots = 1 MiB).
const denseMinSlots = 1 << 23

// add records id and reports whether it was already present.
func (s *idSet) add(id int64) bool {
	if s.sparse != nil {
		if _, ok := s.sparse[id]; ok {
			return true
		}
		s.sparse[id] = struct{}{}
		s.count++
		return false
	}
	if s.bits == nil {
		s.base = id &^ 63
		s.bits = make([]uint64, 1, 1024)
	}
	limit := max(uint64(denseMinSlots), 64*uint64(s.count+1))
	if id < s.base {
		gap := (uint64(s.base) - uint64(id) + 63) / 64 // words to prepend
		if gap > limit/64 || gap+uint64(len(s.bits)) > limit/64 {
			return s.toSparse().add(id)
		}
		grow := max(gap, uint64(len(s.bits))/2)
		if grow*64 > uint64(s.base)^(1<<63) { // would pass MinInt64
			grow = gap
		}
		nb := make([]uint64, int(grow)+len(s.bits), int(grow)+cap(s.bits))
		copy(nb[grow:], s.bits)
		s.bits = nb
		s.base -= int64(grow * 64)
	}
	off := uint64(id) - uint64(s.base)
	w := off / 64
	if w >= uint64(len(s.bits)) {
		if w >= limit/64 {
			return s.toSparse().add(id)
		}
		if w < uint64(cap(s.bits)) {
			s.bits = s.bits[:w+1]
		} else {
			nb := make([]uint64, w+1, max(2*cap(s.bits), int(w)+1))
			copy(nb, s.bits)
			s.bits = nb
		}
	}
	m := uint64(1) << (off % 64)
	if s.bits[w]&m != 0 {
		return true
	}
	s.bits[w] |= m
	s.count++
	return false
}

func (s *idSet) toSparse() *idSet {
	s.sparse = make(map[int64]struct{}, s.count)
	for w, b := range s.bits {
		for b != 0 {
			i := bits.TrailingZeros64(b)
			s.sparse[s.base+int64(w*64+i)] = struct{}{}
			b &^= 1 << i
		}
	}
	s.bits = nil
	return s
}
