package eventtime

import (
	"cmp"
	"math"
	"slices"
)

// Per-source watermarks, shared by the steps that order rows by event time
// (window, alert). The watermark of a source follows its keys: it is the
// event time that the k-th most advanced key of the source has reached,
// counting only keys seen among the source's last idle rows, so that one
// device whose clock runs ahead cannot make every other device's rows late
// and a device that went silent holds nothing back. A step's watermark is
// the smallest of its sources' minus its lateness (see StepWatermark).

// SourceMark is the event-time progress of one source.
type SourceMark struct {
	// Src is the source's index (engine.Batch.Source).
	Src int
	// Max is the source's mark: it never decreases.
	Max int64
	// Rows counts the rows of the source observed.
	Rows int64
	// Top holds the most advanced keys of the source (at most the
	// capacity given to Observe), unordered.
	Top []KeyMark
	// Hit is the index in Top of the key of the previous row, where
	// Observe looks first (kept by the snapshots of steps, so that a
	// restored step continues exactly).
	Hit int
}

// NewSourceMark returns the progress of source src before any row.
func NewSourceMark(src int) *SourceMark {
	return &SourceMark{Src: src, Max: math.MinInt64}
}

// SourceOf returns the progress of source src among *srcs, adding it to
// *srcs when it is not there yet.
func SourceOf(srcs *[]*SourceMark, src int) *SourceMark {
	for _, m := range *srcs {
		if m.Src == src {
			return m
		}
	}
	m := NewSourceMark(src)
	*srcs = append(*srcs, m)
	return m
}

// KeyMark is one of the most advanced keys of a source.
type KeyMark struct {
	// Kid identifies the key to the step that keeps the marks.
	Kid int32
	// Max is the largest event time of the key.
	Max int64
	// Seen is SourceMark.Rows at the key's last row.
	Seen int64
}

// Observe counts a row of key kid at event time t, keeping at most
// capacity keys in Top.
func (m *SourceMark) Observe(kid int32, t int64, capacity int) {
	m.Rows++
	if m.Hit < len(m.Top) && m.Top[m.Hit].Kid == kid {
		e := &m.Top[m.Hit]
		e.Max, e.Seen = max(e.Max, t), m.Rows
		return
	}
	low := -1
	for i := range m.Top {
		e := &m.Top[i]
		if e.Kid == kid {
			e.Max, e.Seen = max(e.Max, t), m.Rows
			m.Hit = i
			return
		}
		if low < 0 || e.Max < m.Top[low].Max || e.Max == m.Top[low].Max && e.Seen < m.Top[low].Seen {
			low = i
		}
	}
	// kid is not among the most advanced keys: its largest event time so
	// far is at most the smallest of theirs, so t is its largest if t
	// displaces that one. At an equal time it displaces the key of the
	// same time seen longest ago, so that keys which all report the same
	// times keep a mark however many there are.
	switch {
	case len(m.Top) < capacity:
		m.Top = append(m.Top, KeyMark{Kid: kid, Max: t, Seen: m.Rows})
		m.Hit = len(m.Top) - 1
	case low >= 0 && t >= m.Top[low].Max:
		m.Top[low] = KeyMark{Kid: kid, Max: t, Seen: m.Rows}
		m.Hit = low
	}
}

// Mark forgets the keys not seen among the last idle rows and returns the
// event time the k-th most advanced of the others has reached (the least
// advanced one when there are fewer), or false when no key is left.
func (m *SourceMark) Mark(k int, idle int64) (int64, bool) {
	live := m.Top[:0]
	for _, e := range m.Top {
		if m.Rows-e.Seen < idle {
			live = append(live, e)
		}
	}
	m.Top, m.Hit = live, 0
	if len(live) == 0 {
		return 0, false
	}
	slices.SortFunc(live, func(a, b KeyMark) int { return cmp.Compare(b.Max, a.Max) })
	return live[min(k, len(live))-1].Max, true
}

// StepWatermark returns the watermark of a step whose sources have made
// the progress srcs: the smallest of their marks minus lateness, or false
// while that is below the smallest event time (some source has no mark
// yet).
func StepWatermark(srcs []*SourceMark, lateness int64) (int64, bool) {
	w := int64(math.MaxInt64)
	for _, s := range srcs {
		w = min(w, s.Max)
	}
	if len(srcs) == 0 || w < math.MinInt64+lateness {
		return 0, false
	}
	return w - lateness, true
}
