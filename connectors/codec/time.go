package codec

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sluice-edge/sluice/engine"
	"github.com/sluice-edge/sluice/engine/spec"
)

type timeKind uint8

const (
	unixMS timeKind = iota
	unixS
	unixUS
	unixNS
	rfc3339
	goLayout
)

var timeKindNames = map[string]timeKind{
	"unix_ms": unixMS, "unix_s": unixS, "unix_us": unixUS, "unix_ns": unixNS, "rfc3339": rfc3339,
}

// TimeFormat says how time values are written in a payload. The zero value
// reads milliseconds since the Unix epoch.
type TimeFormat struct {
	kind   timeKind
	layout string
	loc    *time.Location
}

// ParseTimeFormat parses a time layout: "unix_ms" (the default for ""),
// "unix_s", "unix_us", "unix_ns", "rfc3339", or a Go reference-time layout
// such as "02 01 2006 15:04". zone names the location of layouts without a
// zone ("" or "UTC" for UTC, "Local", or an IANA name).
func ParseTimeFormat(layout, zone string) (TimeFormat, error) {
	f := TimeFormat{loc: time.UTC}
	switch zone {
	case "", "UTC":
	case "Local":
		f.loc = time.Local
	default:
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return f, fmt.Errorf("unknown time zone %q: %v", zone, err)
		}
		f.loc = loc
	}
	if layout == "" {
		return f, nil
	}
	if k, ok := timeKindNames[strings.ToLower(layout)]; ok {
		f.kind = k
		return f, nil
	}
	// A Go layout must format a reference time into something it parses back.
	ref := time.Date(2021, 11, 23, 17, 45, 31, 123456789, f.loc)
	s := ref.Format(layout)
	back, err := time.ParseInLocation(layout, s, f.loc)
	if s == layout || err != nil || back.Year() != 2021 {
		return f, fmt.Errorf("time layout %q is neither a Go layout (such as 2006-01-02 15:04:05) nor one of unix_ms, unix_s, unix_us, unix_ns, rfc3339", layout)
	}
	f.kind, f.layout = goLayout, layout
	return f, nil
}

// ParseTimeFormatConfig reads the fields of TimeFields.
func ParseTimeFormatConfig(cfg *spec.Config) (TimeFormat, error) {
	f, err := ParseTimeFormat("", cfg.String("time_zone"))
	if err != nil {
		return f, cfg.Errorf("time_zone", "%v", err)
	}
	f, err = ParseTimeFormat(cfg.String("time_layout"), cfg.String("time_zone"))
	if err != nil {
		return f, cfg.Errorf("time_layout", "%v", err)
	}
	return f, nil
}

// String returns the layout as written in configuration.
func (f TimeFormat) String() string {
	for name, k := range timeKindNames {
		if k == f.kind && f.kind != goLayout {
			return name
		}
	}
	return f.layout
}

// numeric reports whether times are numbers.
func (f TimeFormat) numeric() bool { return f.kind <= unixNS }

var errTimeRange = errors.New("time out of range (years 0001-9999)")

// inRange turns a time outside what the engine accepts into errTimeRange.
func inRange(ms int64, err error) (int64, error) {
	if err == nil && !engine.ValidEventTime(ms) {
		return 0, errTimeRange
	}
	return ms, err
}

// fromNumber converts a number (validated number text) to milliseconds.
func (f TimeFormat) fromNumber(b []byte) (int64, error) {
	if n, ok := parseWhole(b); ok {
		return inRange(f.fromInt(n))
	}
	v, err := parseFloat(b)
	if err != nil {
		return 0, err
	}
	return inRange(f.fromFloat(v))
}

func (f TimeFormat) fromInt(n int64) (int64, error) {
	switch f.kind {
	case unixS:
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return 0, errTimeRange
		}
		return n * 1000, nil
	case unixUS:
		return floorDiv(n, 1000), nil
	case unixNS:
		return floorDiv(n, 1_000_000), nil
	}
	return n, nil
}

func (f TimeFormat) fromFloat(v float64) (int64, error) {
	switch f.kind {
	case unixS:
		v *= 1000
	case unixUS:
		v /= 1000
	case unixNS:
		v /= 1e6
	}
	v = math.Floor(v)
	if !(v > -9.2e18 && v < 9.2e18) {
		return 0, errTimeRange
	}
	return int64(v), nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// fromText parses a time written as text (a CSV field or a JSON string).
func (f TimeFormat) fromText(b []byte) (int64, error) {
	return inRange(f.parseText(b))
}

func (f TimeFormat) parseText(b []byte) (int64, error) {
	switch f.kind {
	case rfc3339:
		if ms, ok := parseRFC3339(b); ok {
			return ms, nil
		}
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil {
			return 0, fmt.Errorf("expected an RFC 3339 time, got %q", b)
		}
		return t.UnixMilli(), nil
	case goLayout:
		t, err := time.ParseInLocation(f.layout, string(b), f.loc)
		if err != nil {
			return 0, fmt.Errorf("expected a time like %q, got %q", f.layout, b)
		}
		return t.UnixMilli(), nil
	}
	if end, err := scanNumber(b, 0); err == nil && end == len(b) {
		return f.fromNumber(b)
	}
	return 0, fmt.Errorf("expected a number (%s), got %q", f, b)
}

// parseRFC3339 parses the common shapes of RFC 3339 times
// (2006-01-02T15:04:05[.fff...](Z|+07:00)) without allocating. It reports
// false for anything else, which the caller hands to time.Parse.
func parseRFC3339(b []byte) (int64, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	i := 19
	var ms int64
	if b[i] == '.' {
		i++
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if i-start < 3 {
				ms = ms*10 + int64(b[i]-'0')
			}
			i++
		}
		n := i - start
		if n == 0 || n > 9 {
			return 0, false
		}
		for ; n < 3; n++ {
			ms *= 10
		}
	}
	var off int64
	switch {
	case i == len(b)-1 && b[i] == 'Z':
	case i == len(b)-6 && (b[i] == '+' || b[i] == '-') && b[i+3] == ':':
		oh, ok1 := digits(b[i+1 : i+3])
		om, ok2 := digits(b[i+4 : i+6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, false
		}
		off = (oh*60 + om) * 60
		if b[i] == '-' {
			off = -off
		}
	default:
		return 0, false
	}
	days := daysFromCivil(year, month, day)
	secs := days*86400 + hour*3600 + minute*60 + sec - off
	return secs*1000 + ms, true
}

func digits(b []byte) (int64, bool) {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func daysIn(month, year int64) int64 {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}
