// Package retrytopics moves failed records off the hot path: through
// delayed retry tiers (topics), within a retry budget, and finally to the
// quarantine lane (dead-letter topic), carrying their history in floodgate-
// headers ([Meta]).
package retrytopics
