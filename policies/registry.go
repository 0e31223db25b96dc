package policies

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
)

// Param documents one key of a policy spec.
type Param struct {
	Key string
	// Default is the value used when the spec omits the key, written as it
	// would be in a spec ("1ms", "8", "first").
	Default string
	// Meaning is one line for the listing.
	Meaning string
}

// Def describes a policy for the registry: its spec name, one line of
// meaning, its parameters and a constructor.
type Def struct {
	// Name is the part of a spec before the colon: lower-case letters,
	// digits, '_' and '-'.
	Name    string
	Meaning string
	// Params lists the keys New reads, in the order Spec writes them. The
	// registry adds "tick" to every policy; do not declare it.
	Params []Param
	// New builds the policy from parsed arguments. It reads each value
	// through Args and returns Args.Err, or Args.Invalid for a value out of
	// range.
	New func(a *Args) (Policy, error)
}

// TickKey is the parameter every registered policy accepts.
const TickKey = "tick"

var tickParam = Param{Key: TickKey, Default: "0s", Meaning: "timer granularity: wake-ups round up to a multiple of it, counted from when the timer is armed (0s = exact)"}

var registry = struct {
	sync.RWMutex
	defs map[string]*Def
}{defs: map[string]*Def{}}

// Register adds a policy so that Parse, Names and List know it. It fails on
// an empty or malformed name, a name already registered, a nil
// constructor, or a duplicate or reserved key.
func Register(d Def) error {
	if !validName(d.Name) {
		return fmt.Errorf("policies: register: invalid policy name %q (want lower-case letters, digits, '_' or '-')", d.Name)
	}
	if d.New == nil {
		return fmt.Errorf("policies: register %s: New is nil", d.Name)
	}
	params := make([]Param, 0, len(d.Params)+1)
	seen := map[string]bool{}
	for _, p := range d.Params {
		if !validName(p.Key) || p.Key == TickKey || seen[p.Key] {
			return fmt.Errorf("policies: register %s: invalid, reserved or duplicate key %q", d.Name, p.Key)
		}
		seen[p.Key] = true
		params = append(params, p)
	}
	d.Params = append(params, tickParam)
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.defs[d.Name]; dup {
		return fmt.Errorf("policies: register: policy %q already registered", d.Name)
	}
	registry.defs[d.Name] = &d
	return nil
}

func mustRegister(d Def) {
	if err := Register(d); err != nil {
		panic(err)
	}
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// Names returns the registered policy names, sorted.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.defs))
	for n := range registry.defs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Defs returns a copy of every registered definition, sorted by name, with
// the "tick" parameter included, for commands that render their own listing.
func Defs() []Def {
	registry.RLock()
	defer registry.RUnlock()
	defs := make([]Def, 0, len(registry.defs))
	for _, d := range registry.defs {
		c := *d
		c.Params = append([]Param(nil), d.Params...)
		defs = append(defs, c)
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].Name < defs[j].Name })
	return defs
}

// List writes every registered policy with its parameters, defaults and
// one line of meaning each: the text of `simrun --policy list`.
func List(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, d := range Defs() {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "%s — %s\n", d.Name, d.Meaning)
		for _, p := range d.Params {
			fmt.Fprintf(tw, "  %s=%s\t%s\n", p.Key, p.Default, p.Meaning)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "spec: name:key=value,key=value (durations as Go durations, e.g. 750us, 2ms; lists separated by '/')")
	return tw.Flush()
}

// Parse builds a policy from a spec "name:key=value,key=value". Keys left
// out take their defaults. Errors are one line and list what is valid.
func Parse(spec string) (Policy, error) {
	spec = strings.TrimSpace(spec)
	name, rest, _ := strings.Cut(spec, ":")
	name = strings.TrimSpace(name)
	registry.RLock()
	d, ok := registry.defs[name]
	registry.RUnlock()
	if !ok {
		if name == "" {
			return nil, fmt.Errorf("policies: empty policy spec (valid policies: %s)", strings.Join(Names(), ", "))
		}
		return nil, fmt.Errorf("policies: unknown policy %q (valid policies: %s)", name, strings.Join(Names(), ", "))
	}
	a := &Args{def: d, raw: make(map[string]string, len(d.Params)), canon: make(map[string]string, len(d.Params))}
	given := map[string]bool{}
	if strings.TrimSpace(rest) != "" {
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(kv, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !ok || k == "" {
				return nil, fmt.Errorf("policies: %s: %q is not key=value (valid keys: %s)", name, strings.TrimSpace(kv), a.keys())
			}
			if a.param(k) == nil {
				return nil, fmt.Errorf("policies: %s: unknown key %q (valid keys: %s)", name, k, a.keys())
			}
			if given[k] {
				return nil, fmt.Errorf("policies: %s: key %q given twice", name, k)
			}
			given[k] = true
			a.raw[k] = v
		}
	}
	for _, p := range d.Params {
		if !given[p.Key] {
			a.raw[p.Key] = p.Default
		}
	}
	p, err := d.New(a)
	if err != nil {
		return nil, err
	}
	if a.err != nil {
		return nil, a.err
	}
	if p == nil {
		return nil, fmt.Errorf("policies: %s: constructor returned no policy", name)
	}
	return p, nil
}

// Args are the parsed key=value pairs of one spec, defaults filled in. The
// typed getters convert a value, remember its canonical form for Spec, and
// record the first conversion error for Err; on error they return the zero
// value.
type Args struct {
	def   *Def
	raw   map[string]string
	canon map[string]string
	err   error
}

// Name is the policy name of the spec.
func (a *Args) Name() string { return a.def.Name }

func (a *Args) param(key string) *Param {
	for i := range a.def.Params {
		if a.def.Params[i].Key == key {
			return &a.def.Params[i]
		}
	}
	return nil
}

func (a *Args) keys() string {
	ks := make([]string, len(a.def.Params))
	for i, p := range a.def.Params {
		ks[i] = p.Key
	}
	return strings.Join(ks, ", ")
}

func (a *Args) get(key string) string {
	if a.param(key) == nil {
		panic(fmt.Sprintf("policies: %s: constructor reads undeclared key %q", a.def.Name, key))
	}
	return a.raw[key]
}

func (a *Args) fail(key, why string) {
	if a.err == nil {
		a.err = a.Invalid(key, why)
	}
}

// Invalid returns the one-line error for a value of key that converts but
// is out of range, e.g. a.Invalid("window", "must be > 0").
func (a *Args) Invalid(key, why string) error {
	return fmt.Errorf("policies: %s: %s=%s: %s", a.def.Name, key, show(a.raw[key]), why)
}

// show keeps an error on one line whatever the user typed.
func show(v string) string {
	if strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' }) {
		return strconv.Quote(v)
	}
	return v
}

// Err is the first conversion error, or nil.
func (a *Args) Err() error { return a.err }

// Duration reads a Go duration ("750us", "2ms").
func (a *Args) Duration(key string) time.Duration {
	d, err := time.ParseDuration(a.get(key))
	if err != nil {
		a.fail(key, "not a duration (e.g. 750us, 2ms)")
		return 0
	}
	a.canon[key] = formatDuration(d)
	return d
}

// Int reads a decimal integer.
func (a *Args) Int(key string) int {
	n, err := strconv.Atoi(a.get(key))
	if err != nil {
		a.fail(key, "not an integer")
		return 0
	}
	a.canon[key] = strconv.Itoa(n)
	return n
}

// Float reads a finite decimal number.
func (a *Args) Float(key string) float64 {
	f, err := strconv.ParseFloat(a.get(key), 64)
	if err != nil || f != f || f > 1e300 || f < -1e300 {
		a.fail(key, "not a finite number")
		return 0
	}
	a.canon[key] = strconv.FormatFloat(f, 'g', -1, 64)
	return f
}

// Choice reads one of the given words.
func (a *Args) Choice(key string, choices ...string) string {
	v := a.get(key)
	for _, c := range choices {
		if v == c {
			a.canon[key] = v
			return v
		}
	}
	a.fail(key, "want one of "+strings.Join(choices, ", "))
	return ""
}

// Ints reads a '/'-separated list of integers ("4/8"); empty means none.
func (a *Args) Ints(key string) []int {
	v := a.get(key)
	if v == "" {
		a.canon[key] = ""
		return nil
	}
	parts := strings.Split(v, "/")
	out := make([]int, len(parts))
	canon := make([]string, len(parts))
	for i, s := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			a.fail(key, "not a '/'-separated list of integers (e.g. 4/8)")
			return nil
		}
		out[i], canon[i] = n, strconv.Itoa(n)
	}
	a.canon[key] = strings.Join(canon, "/")
	return out
}

// Durations reads a '/'-separated list of durations ("750us/1ms/2ms").
func (a *Args) Durations(key string) []time.Duration {
	v := a.get(key)
	if v == "" {
		a.canon[key] = ""
		return nil
	}
	parts := strings.Split(v, "/")
	out := make([]time.Duration, len(parts))
	canon := make([]string, len(parts))
	for i, s := range parts {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			a.fail(key, "not a '/'-separated list of durations (e.g. 750us/1ms)")
			return nil
		}
		out[i], canon[i] = d, formatDuration(d)
	}
	a.canon[key] = strings.Join(canon, "/")
	return out
}

// Spec is the canonical spec of these arguments: every declared key in
// declaration order, in canonical form, except tick when it is zero. Call it
// after reading the values; Parse(a.Spec()) rebuilds the same policy.
func (a *Args) Spec() string {
	var b strings.Builder
	b.WriteString(a.def.Name)
	sep := ":"
	for _, p := range a.def.Params {
		v, ok := a.canon[p.Key]
		if !ok {
			v = a.raw[p.Key]
		}
		if p.Key == TickKey && (v == "0s" || v == "0") {
			continue
		}
		b.WriteString(sep)
		b.WriteString(p.Key)
		b.WriteByte('=')
		b.WriteString(v)
		sep = ","
	}
	return b.String()
}

// formatDuration writes d so that time.ParseDuration reads it back and a
// shell needs no quoting ("750us", not "750µs").
func formatDuration(d time.Duration) string {
	return strings.ReplaceAll(d.String(), "µ", "u")
}
