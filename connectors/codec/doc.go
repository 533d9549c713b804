// Package codec decodes device payloads into rows and encodes rows as JSON.
//
// Every source that reads payloads (files, MQTT, ...) shares these decoders:
//
//   - EnOS decodes EnOS measure-point payloads (thing.measurepoint.post and
//     .../resume, single or batch);
//   - JSON decodes one JSON object per payload with a mapping of dotted paths;
//   - CSV decodes one CSV line per payload against a header.
//
// A decoder appends rows straight into an engine.RecordBuilder. It never
// builds a map per event and, in steady state, does not allocate. Decoding
// happens in two steps: Parse checks a payload and stages its rows, Append
// adds the staged rows to a builder. A payload that fails to parse leaves
// nothing staged, so a bad payload never leaves a builder with a partial
// row. Decode does both steps at once. Between Parse and Append the payload
// must not change: staged strings point into it.
//
// The schema a source produces is declared in its configuration with the
// fields returned by SchemaFields and read with ParseMapping:
//
//	schema:
//	  time: ts
//	  key: asset
//	  fields: {power: float64, wind_speed: float64, status: string}
//	mapping: {power: Power, wind_speed: wind.speed}
//
// AppendJSONRow and AppendJSONLines are the one JSON encoding every sink
// writes.
package codec
