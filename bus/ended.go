package bus

import "context"

// Ended reports how the job message seq of JobsStream (the job with ID
// id) ended, when its latest record in HistoryStream says it succeeded or
// was cancelled: JobSucceeded or JobCancelled, and true. It reports false
// for a job with no such record for that very message (a record of an
// earlier message of the same ID, a retried dead letter's, does not
// count), and when the history is off or has dropped the record.
//
// A worker asks it of a job delivered again: the server redelivers a job
// whose ack it never got, though the job ran to its end (an ack is not
// awaited, and one sent while a cluster elects a consumer leader is lost),
// and such a job must be acked again, not run again, nor dead-lettered as
// interrupted once its tries are used.
func (in *Inspector) Ended(ctx context.Context, id string, seq uint64) (JobState, bool, error) {
	rec, err := in.record(ctx, id)
	if rec == nil || err != nil || rec.Seq != seq {
		return "", false, err
	}
	switch rec.State {
	case JobSucceeded, JobCancelled:
		return rec.State, true, nil
	}
	return "", false, nil
}
