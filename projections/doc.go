// Package projections runs the read-model projections: a Watermill router fed by the
// event store's subscription, one handler group per read model, each store (Redis or
// in-process) writing its checkpoint atomically with its change.
package projections
