package readmodel

// ApplyScript exposes the apply script to the tests of package readmodel_test, which check
// that it refuses malformed arguments before its first write.
var ApplyScript = applyScript
