package spec

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// kindOrder is the order of the sections of the reference.
var kindOrder = []Kind{KindSource, KindStep, KindSink}

var kindTitles = map[Kind]string{KindSource: "Sources", KindStep: "Steps", KindSink: "Sinks"}

func kindRank(k Kind) int {
	if i := slices.Index(kindOrder, k); i >= 0 {
		return i
	}
	return len(kindOrder)
}

// Markdown writes the pipeline reference for the given components. It
// starts with "# title" (left out when title is empty) and, for more than
// one component, an index; then one section per kind (sources, steps,
// sinks) with, for each component, a heading, its summary and description,
// a table of its fields (name, type, default, description; nested fields
// flattened as parent.child, list[].child and map.*.child; advanced fields
// last), and its YAML example. Components are ordered by kind and then by
// name, so the output depends only on the specs.
func Markdown(w io.Writer, title string, specs []*Spec) error {
	sorted := slices.Clone(specs)
	slices.SortStableFunc(sorted, func(a, b *Spec) int {
		if d := kindRank(a.Kind) - kindRank(b.Kind); d != 0 {
			return d
		}
		if a.Kind != b.Kind {
			return strings.Compare(string(a.Kind), string(b.Kind))
		}
		return strings.Compare(a.Name, b.Name)
	})
	var b strings.Builder
	if title != "" {
		fmt.Fprintf(&b, "# %s\n\n", title)
	}
	groups := groupByKind(sorted)
	if len(sorted) > 1 {
		for _, g := range groups {
			links := make([]string, len(g.specs))
			for i, s := range g.specs {
				links[i] = fmt.Sprintf("[%s](#%s)", code(s.Name), slug(heading(s)))
			}
			fmt.Fprintf(&b, "- **%s:** %s\n", g.title, strings.Join(links, ", "))
		}
		b.WriteString("\n")
	}
	for _, g := range groups {
		fmt.Fprintf(&b, "## %s\n\n", g.title)
		for _, s := range g.specs {
			writeSpec(&b, s)
		}
	}
	_, err := io.WriteString(w, strings.TrimRight(b.String(), "\n")+"\n")
	return err
}

type kindGroup struct {
	title string
	specs []*Spec
}

func groupByKind(sorted []*Spec) []kindGroup {
	var out []kindGroup
	for i, s := range sorted {
		if i == 0 || s.Kind != sorted[i-1].Kind {
			t := kindTitles[s.Kind]
			if t == "" {
				t = "Components"
				if s.Kind != "" {
					t = "Other components: " + string(s.Kind)
				}
			}
			out = append(out, kindGroup{title: t})
		}
		out[len(out)-1].specs = append(out[len(out)-1].specs, s)
	}
	return out
}

func heading(s *Spec) string {
	h := code(s.Name)
	if s.Kind != "" {
		h += " " + string(s.Kind)
	}
	return h
}

// slug is the anchor GitHub and most renderers give a heading.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func writeSpec(b *strings.Builder, s *Spec) {
	fmt.Fprintf(b, "### %s\n\n", heading(s))
	if t := strings.TrimSpace(s.Summary); t != "" {
		b.WriteString(t + "\n\n")
	}
	if t := strings.TrimSpace(s.Description); t != "" {
		b.WriteString(t + "\n\n")
	}
	if len(s.Fields) == 0 {
		b.WriteString("This component takes no fields.\n\n")
	} else {
		b.WriteString("| Field | Type | Default | Description |\n| --- | --- | --- | --- |\n")
		writeRows(b, "", s.Fields)
		b.WriteString("\n")
	}
	if ex := strings.Trim(s.Example, "\n"); strings.TrimSpace(ex) != "" {
		fence := "```"
		for strings.Contains(ex, fence) {
			fence += "`"
		}
		fmt.Fprintf(b, "Example:\n\n%syaml\n%s\n%s\n\n", fence, ex, fence)
	}
}

// docOrder lists the fields in declaration order with advanced fields last.
func docOrder(fields []Field) []Field {
	out := make([]Field, 0, len(fields))
	for _, f := range fields {
		if !f.Advanced {
			out = append(out, f)
		}
	}
	for _, f := range fields {
		if f.Advanced {
			out = append(out, f)
		}
	}
	return out
}

func writeRows(b *strings.Builder, prefix string, fields []Field) {
	for _, f := range docOrder(fields) {
		name := prefix + f.Name
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", cell(code(name)), cell(typeLabel(f)), cell(defaultLabel(f)), cell(describe(f)))
		switch {
		case f.Type == Object:
			writeRows(b, name+".", f.Children)
		case f.Type == List && f.Elem == Object:
			writeRows(b, name+"[].", f.Children)
		case f.Type == Map && f.Elem == Object:
			writeRows(b, name+".*.", f.Children)
		}
	}
}

func typeLabel(f Field) string {
	switch f.Type {
	case List, Map:
		elem := f.Elem
		if elem == 0 {
			elem = Any
		}
		return fmt.Sprintf("%s of %s", f.Type, elem)
	}
	return f.Type.String()
}

func defaultLabel(f Field) string {
	switch {
	case f.Required():
		return "*required*"
	case f.Default == nil:
		return ""
	}
	return code(formatValue(f.Default))
}

func describe(f Field) string {
	var parts []string
	if f.Advanced {
		parts = append(parts, "*Advanced.*")
	}
	if d := strings.TrimSpace(f.Description); d != "" {
		parts = append(parts, d)
	}
	if len(f.Enum) > 0 {
		vals := make([]string, len(f.Enum))
		for i, e := range f.Enum {
			vals[i] = code(e)
		}
		parts = append(parts, "One of: "+strings.Join(vals, ", ")+".")
	}
	if f.Example != nil {
		parts = append(parts, "Example: "+code(formatValue(f.Example))+".")
	}
	return strings.Join(parts, " ")
}

// cell makes text safe for a table cell: one line, pipes escaped.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// code renders s as an inline code span.
func code(s string) string {
	if s == "" {
		return "` `"
	}
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if len(fence) > 1 || strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

// formatValue renders a default or example as YAML flow text.
func formatValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		if v == "" || strings.TrimSpace(v) != v || strings.ContainsAny(v, "\n\t") {
			return strconv.Quote(v)
		}
		return v
	case time.Duration:
		return FormatDuration(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		items := make([]string, rv.Len())
		for i := range items {
			items[i] = formatValue(rv.Index(i).Interface())
		}
		return "[" + strings.Join(items, ", ") + "]"
	case reflect.Map:
		keys := rv.MapKeys()
		items := make([]string, len(keys))
		for i, k := range keys {
			items[i] = formatValue(k.Interface()) + ": " + formatValue(rv.MapIndex(k).Interface())
		}
		slices.Sort(items)
		return "{" + strings.Join(items, ", ") + "}"
	}
	return fmt.Sprint(v)
}
