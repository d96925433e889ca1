// Package lagmonitor measures how far a consumer lags, turns it into a
// pressure level, and publishes it as signals on a control topic that the
// producers feeding the consumer follow; it also reads those signals back
// (the reader producers use).
//
// This package is being built (issue 8): the signal type and its key and
// partition are the contract between publishers and readers.
package lagmonitor
