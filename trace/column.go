package trace

import (
	"fmt"
	"io"
	"slices"

	"github.com/parquet-go/parquet-go"
)

// column is a cursor over one leaf column of the current row group. It
// holds one decoded page at a time and reads its values in place (dictionary
// pages are expanded once per page into a reused slice).
type column struct {
	file  string
	name  string
	index int // leaf index in row groups
	kind  parquet.Kind
	list  bool

	// Definition levels: a value is present at maxDef. For lists, levels
	// below listDef mean a null list and below elemDef an empty list.
	maxDef, listDef, elemDef int

	pages parquet.Pages
	page  parquet.Page
	defs  []byte
	reps  []byte
	i64   []int64
	i32   []int32
	bytes []byte
	offs  []uint32
	li    int // next level index (or value index when there are no levels)
	vi    int // next value index
	done  bool
	// allNull: the current page holds only nulls (for lists: only null
	// lists, one level entry per row), so rows can be skipped in bulk. A
	// writer that stores an optional column nobody set produces such pages.
	allNull bool

	dict64    []int64
	dict32    []int32
	dictBytes []byte
	dictOffs  []uint32
	starts    []int
	kinds     []int8
	intern    map[string]*string
}

// lookupColumn finds a column by name and checks its physical type and
// shape. It returns nil, nil when the column is absent.
func lookupColumn(root *parquet.Column, name string, kind parquet.Kind, list bool) (*column, error) {
	top := root.Column(name)
	if top == nil {
		return nil, nil
	}
	c := &column{name: name, kind: kind, list: list}
	leaf, d := top, 0
	if top.Optional() || top.Repeated() {
		d++
	}
	c.listDef = d
	if list {
		// Standard 3-level LIST (optional group > repeated group >
		// element), or the legacy 2-level repeated leaf.
		if top.Repeated() && top.Leaf() {
			c.listDef = 0
		} else {
			if top.Leaf() || len(top.Columns()) != 1 || !top.Columns()[0].Repeated() {
				return nil, fmt.Errorf("is not a list<int64>")
			}
			mid := top.Columns()[0]
			d++
			if mid.Leaf() {
				leaf = mid
			} else {
				if len(mid.Columns()) != 1 || !mid.Columns()[0].Leaf() {
					return nil, fmt.Errorf("is not a list<int64>")
				}
				leaf = mid.Columns()[0]
			}
		}
		c.elemDef = d
		if leaf.MaxRepetitionLevel() != 1 {
			return nil, fmt.Errorf("is not a list<int64> (repetition level %d)", leaf.MaxRepetitionLevel())
		}
	} else if !top.Leaf() || top.MaxRepetitionLevel() != 0 {
		return nil, fmt.Errorf("is a group or repeated; want a plain %v", kind)
	}
	if got := leaf.Type().Kind(); got != kind {
		return nil, fmt.Errorf("has type %v, want %v", got, kind)
	}
	c.maxDef = leaf.MaxDefinitionLevel()
	c.index = leaf.Index()
	if c.index < 0 {
		return nil, fmt.Errorf("has no leaf index")
	}
	return c, nil
}

func (c *column) reset(p parquet.Pages) error {
	c.close()
	c.pages = p
	c.done = false
	c.defs, c.reps, c.i64, c.i32, c.bytes, c.offs = nil, nil, nil, nil, nil, nil
	c.li, c.vi = 0, 0
	return nil
}

func (c *column) close() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	if c.pages != nil {
		c.pages.Close()
		c.pages = nil
	}
}

func (c *column) errorf(row int64, format string, args ...any) error {
	return &Error{File: c.file, Row: row, Column: c.name, Msg: fmt.Sprintf(format, args...)}
}

// levels is the number of level entries (rows, for flat columns) in the
// current page.
func (c *column) levels() int {
	if c.maxDef > 0 || c.list {
		return len(c.defs)
	}
	switch c.kind {
	case parquet.Int64:
		return len(c.i64)
	case parquet.Int32:
		return len(c.i32)
	default:
		return max(len(c.offs)-1, 0)
	}
}

// nextPage loads the next page; io.EOF when the chunk has no more.
func (c *column) nextPage(row int64) error {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
	if c.done {
		return io.EOF
	}
	p, err := c.pages.ReadPage()
	if err == io.EOF {
		c.done = true
		return io.EOF
	}
	if err != nil {
		return c.errorf(row, "reading page: %v", err)
	}
	c.page = p
	c.li, c.vi = 0, 0
	c.defs, c.reps = p.DefinitionLevels(), p.RepetitionLevels()
	if c.maxDef > 0 && int64(len(c.defs)) != p.NumValues() {
		return c.errorf(row, "page has %d definition levels for %d values", len(c.defs), p.NumValues())
	}
	if c.list && len(c.reps) != len(c.defs) {
		return c.errorf(row, "page has %d repetition levels for %d definition levels", len(c.reps), len(c.defs))
	}
	data := p.Data()
	if dict := p.Dictionary(); dict != nil {
		idx := data.Int32()
		dv := dict.Page().Data()
		switch c.kind {
		case parquet.Int64:
			c.dict64 = expand(c.dict64[:0], dv.Int64(), idx)
			c.i64 = c.dict64
		case parquet.Int32:
			c.dict32 = expand(c.dict32[:0], dv.Int32(), idx)
			c.i32 = c.dict32
		case parquet.ByteArray:
			// Strings are rare and short: rebuild a plain data/offsets
			// pair so one code path reads both encodings.
			// Owned buffers: c.bytes may still alias a released page.
			b, o := dv.ByteArray()
			c.dictBytes, c.dictOffs = c.dictBytes[:0], append(c.dictOffs[:0], 0)
			for _, i := range idx {
				if i < 0 || int(i)+1 >= len(o) || o[i] > o[i+1] || int(o[i+1]) > len(b) {
					return c.errorf(row, "dictionary index %d out of range", i)
				}
				c.dictBytes = append(c.dictBytes, b[o[i]:o[i+1]]...)
				c.dictOffs = append(c.dictOffs, uint32(len(c.dictBytes)))
			}
			c.bytes, c.offs = c.dictBytes, c.dictOffs
		}
		if c.kind == parquet.Int64 && len(c.i64) != len(idx) || c.kind == parquet.Int32 && len(c.i32) != len(idx) {
			return c.errorf(row, "dictionary index out of range")
		}
	} else {
		switch c.kind {
		case parquet.Int64:
			c.i64 = data.Int64()
		case parquet.Int32:
			c.i32 = data.Int32()
		case parquet.ByteArray:
			c.bytes, c.offs = data.ByteArray()
			if len(c.offs) == 0 {
				c.offs = []uint32{0}
			}
		}
	}
	present := c.numValues()
	c.allNull = false
	if present == 0 && c.maxDef > 0 {
		c.allNull = true
		for _, d := range c.defs {
			if c.list && int(d) >= c.listDef {
				c.allNull = false
				break
			}
		}
		for _, r := range c.reps {
			if r != 0 {
				c.allNull = false
				break
			}
		}
	}
	if c.maxDef > 0 {
		want := 0
		for _, d := range c.defs {
			if int(d) == c.maxDef {
				want++
			}
		}
		if want != present {
			return c.errorf(row, "page has %d values for %d non-null levels", present, want)
		}
	}
	return nil
}

func (c *column) numValues() int {
	switch c.kind {
	case parquet.Int64:
		return len(c.i64)
	case parquet.Int32:
		return len(c.i32)
	default:
		return max(len(c.offs)-1, 0)
	}
}

// expand looks dictionary indexes up; an index out of range stops early
// so the caller's length check reports corruption.
func expand[T any](dst, dict []T, idx []int32) []T {
	for _, i := range idx {
		if i < 0 || int(i) >= len(dict) {
			return dst
		}
		dst = append(dst, dict[i])
	}
	return dst
}

// ensure makes sure the current page has an unread level; row is the
// 1-based row being read, for errors.
func (c *column) ensure(row int64) error {
	for c.li >= c.levels() {
		if err := c.nextPage(row); err != nil {
			if err == io.EOF {
				return c.errorf(row, "column ends before the row group does")
			}
			return err
		}
	}
	return nil
}

// readInt64s reads len(dst) values of a required int64 column.
func (c *column) readInt64s(dst []int64, first int64) error {
	for n := 0; n < len(dst); {
		if err := c.ensure(first + int64(n)); err != nil {
			return err
		}
		if c.maxDef == 0 {
			m := copy(dst[n:], c.i64[c.li:])
			c.li += m
			n += m
			continue
		}
		// Stored as optional by another tool: nulls are errors.
		for ; n < len(dst) && c.li < len(c.defs); n++ {
			if int(c.defs[c.li]) != c.maxDef {
				return c.errorf(first+int64(n), "null in a required field")
			}
			dst[n] = c.i64[c.vi]
			c.li++
			c.vi++
		}
	}
	return nil
}

// readInt32s reads len(dst) values of a required int32 column.
func (c *column) readInt32s(dst []int32, first int64) error {
	for n := 0; n < len(dst); {
		if err := c.ensure(first + int64(n)); err != nil {
			return err
		}
		if c.maxDef == 0 {
			m := copy(dst[n:], c.i32[c.li:])
			c.li += m
			n += m
			continue
		}
		for ; n < len(dst) && c.li < len(c.defs); n++ {
			if int(c.defs[c.li]) != c.maxDef {
				return c.errorf(first+int64(n), "null in a required field")
			}
			dst[n] = c.i32[c.vi]
			c.li++
			c.vi++
		}
	}
	return nil
}

// skipNulls advances over all-null rows of the current page, up to the
// end of out, and returns how many rows it skipped; the rows' fields stay
// nil as Reader.readChunk left them.
func (c *column) skipNulls(n, rows int) int {
	if !c.allNull {
		return 0
	}
	k := min(rows-n, len(c.defs)-c.li)
	c.li += k
	return k
}

// readOptInt64s reads an optional int64 column into out via set. The values
// of one call share one allocation.
func (c *column) readOptInt64s(out []Request, first int64, set func(*Request, *int64)) error {
	var slab []int64
	for n := 0; n < len(out); n++ {
		if err := c.ensure(first + int64(n)); err != nil {
			return err
		}
		if k := c.skipNulls(n, len(out)); k > 0 {
			n += k - 1
			continue
		}
		if c.maxDef > 0 && int(c.defs[c.li]) != c.maxDef {
			c.li++
			set(&out[n], nil)
			continue
		}
		if slab == nil {
			slab = make([]int64, 0, len(out)-n)
		}
		slab = append(slab, c.i64[c.vi])
		set(&out[n], &slab[len(slab)-1])
		c.li++
		c.vi++
	}
	return nil
}

func (c *column) readOptInt32s(out []Request, first int64) error {
	var slab []int32
	for n := 0; n < len(out); n++ {
		if err := c.ensure(first + int64(n)); err != nil {
			return err
		}
		if k := c.skipNulls(n, len(out)); k > 0 {
			n += k - 1
			continue
		}
		if c.maxDef > 0 && int(c.defs[c.li]) != c.maxDef {
			c.li++
			out[n].Priority = nil
			continue
		}
		if slab == nil {
			slab = make([]int32, 0, len(out)-n)
		}
		slab = append(slab, c.i32[c.vi])
		out[n].Priority = &slab[len(slab)-1]
		c.li++
		c.vi++
	}
	return nil
}

// readOptStrings reads request_class, interning the (few) distinct classes
// so a long trace does not allocate a string per row.
func (c *column) readOptStrings(out []Request, first int64) error {
	for n := 0; n < len(out); n++ {
		if err := c.ensure(first + int64(n)); err != nil {
			return err
		}
		if k := c.skipNulls(n, len(out)); k > 0 {
			n += k - 1
			continue
		}
		if c.maxDef > 0 && int(c.defs[c.li]) != c.maxDef {
			c.li++
			out[n].RequestClass = nil
			continue
		}
		b := c.bytes[c.offs[c.vi]:c.offs[c.vi+1]]
		p, ok := c.intern[string(b)]
		if !ok {
			s := string(b)
			p = &s
			if c.intern == nil {
				c.intern = map[string]*string{}
			}
			// Bounded: a trace with unbounded distinct classes
			// (unlikely) just stops interning.
			if len(c.intern) < 4096 {
				c.intern[s] = p
			}
		}
		out[n].RequestClass = p
		c.li++
		c.vi++
	}
	return nil
}

// readLists reads prefix_block_ids. A row's entries end where the next
// entry has repetition level 0; a row may continue on the next page
// (data page v1), so the end of a page is resolved by peeking.
func (c *column) readLists(out []Request, first int64) error {
	var arena []int64
	// Reused across calls: only the arena escapes into the Requests.
	c.starts = slices.Grow(c.starts[:0], len(out)+1)[:len(out)+1]
	c.kinds = slices.Grow(c.kinds[:0], len(out))[:len(out)]
	starts, kinds := c.starts, c.kinds // kinds: 0 null, 1 list
	clear(kinds)
	for n := 0; n < len(out); n++ {
		row := first + int64(n)
		if err := c.ensure(row); err != nil {
			return err
		}
		if k := c.skipNulls(n, len(out)); k > 0 {
			for m := n; m < n+k; m++ {
				starts[m] = len(arena)
			}
			n += k - 1
			continue
		}
		if len(c.reps) > 0 && c.reps[c.li] != 0 {
			return c.errorf(row, "list continues a row that already ended")
		}
		starts[n] = len(arena)
		for entry := 0; ; entry++ {
			if entry > 0 {
				if c.li >= len(c.defs) {
					if err := c.nextPage(row); err == io.EOF {
						break
					} else if err != nil {
						return err
					}
					if len(c.defs) == 0 {
						continue
					}
				}
				if c.reps[c.li] == 0 {
					break
				}
			}
			d := int(c.defs[c.li])
			switch {
			case d == c.maxDef:
				arena = append(arena, c.i64[c.vi])
				c.vi++
				kinds[n] = 1
			case d < c.listDef:
				kinds[n] = 0
			case d < c.elemDef:
				kinds[n] = 1
			default:
				return c.errorf(row, "null element in prefix_block_ids")
			}
			c.li++
		}
	}
	starts[len(out)] = len(arena)
	for n := range out {
		if kinds[n] == 0 {
			out[n].PrefixBlockIDs = nil
			continue
		}
		out[n].PrefixBlockIDs = arena[starts[n]:starts[n+1]:starts[n+1]]
		if out[n].PrefixBlockIDs == nil {
			out[n].PrefixBlockIDs = []int64{}
		}
	}
	return nil
}
