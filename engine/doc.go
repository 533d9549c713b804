// Package engine is the Sluice runtime: the record model (schemas and Arrow
// record batches), the contracts that sources, operators and sinks implement,
// the component registry, and the graph executor that wires components with
// go-streams and drives them from start to graceful drain.
//
// Data flows one way: sources -> operators -> sinks. The unit that travels
// between components is a Batch holding one Arrow record batch. Ownership of
// the record travels with the batch: whoever receives a Batch owns exactly one
// reference to its record and must either pass it on or release it.
package engine
