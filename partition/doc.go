// Package partition holds the pure, I/O-free state of one consumed
// partition: the in-flight [Window] that bounds records and bytes between
// fetch and terminal state, the completion [Tracker] that turns
// out-of-order completions into a commit watermark, and the [Reasons] a
// partition is paused for.
//
// # Window and hysteresis
//
// A [Window] counts records and bytes admitted but not yet terminal. It has
// a hard cap ([Limits.MaxRecords], [Limits.MaxBytes]) and a lower resume mark
// ([Limits.ResumeRecords], [Limits.ResumeBytes]). The window asks for a pause
// when it becomes full (or when a record is refused because it would not
// fit) and allows a resume only once it has drained to the resume mark, so
// a partition hovering around its cap does not flap between paused and
// fetching.
//
// # Tracker and watermark
//
// A [Tracker] receives records in fetch (offset) order and completions in
// any order. Its watermark is the offset just past the longest completed
// prefix: the only offset that may be committed. What it holds, from the
// oldest incomplete record to the newest added ([Tracker.Pending]), is what
// a crash would hand to the next owner beside the uncommitted prefix, so
// the runtime bounds it. Offsets need not be
// contiguous (compacted topics, transaction markers): the watermark moves
// from one tracked offset to the next. Each operation is O(1) amortised and
// allocates nothing once the ring has grown to the window size.
//
// # Reasons
//
// [Reasons] is a bit set: a partition is paused while any reason holds it,
// and lifting one never lifts another. The runtime sets and clears
// [WindowFull], [Memory], [SpanFull], [CommitStalled], [DivertFailed] and
// [Priority] (its priority classes' share of the byte budget) itself;
// [Lag], [RetryDue] and [Manual] belong to the parts that pause partitions
// for their own reasons (a lag monitor pausing less important classes,
// retry tiers, the application).
//
// # Concurrency
//
// Nothing in this package is safe for concurrent use; the consumer runtime
// guards each partition's state with its own lock.
package partition
