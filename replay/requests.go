package replay

import (
	"fmt"
	"math/rand/v2"

	"github.com/batchkit/batchkit/trace"
)

// PromptTokens returns n deterministic pseudo-random token ids in
// [0, vocab) for request id: the same request gets the same prompt in
// every run and in every engine with the same vocabulary.
func PromptTokens(id int64, n, vocab int, seed uint64) []int32 {
	r := rand.New(rand.NewPCG(seed, uint64(id)^0x5851f42d4c957f2d))
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(r.IntN(vocab))
	}
	return out
}

// Limit selects the requests a run may send: the first maxRequests (0:
// all) and those whose trace arrival_ns is before before (0: no limit;
// open loop passes its --duration times the speedup).
func Limit(reqs []trace.Request, maxRequests int, before int64) []trace.Request {
	if maxRequests > 0 && len(reqs) > maxRequests {
		reqs = reqs[:maxRequests]
	}
	if before > 0 {
		for i, r := range reqs {
			if r.ArrivalNS >= before {
				return reqs[:i]
			}
		}
	}
	return reqs
}

// FitContext makes every request fit an engine context of maxContext
// tokens (prompt + output). Without truncate a request that does not fit
// is an error naming its trace row; with truncate its prompt is cut to
// maxContext-output_tokens (at least 1 token) and, if that is not enough,
// its output to maxContext-1, so that the simulator and the engine see the
// same shortened request. It returns a copy when anything changed and the
// number of requests cut.
func FitContext(reqs []trace.Request, maxContext int, truncate bool) ([]trace.Request, int, error) {
	if maxContext < 2 {
		return nil, 0, fmt.Errorf("engine context %d is too small (need at least 2 tokens)", maxContext)
	}
	var out []trace.Request
	cut := 0
	for i, r := range reqs {
		if int64(r.InputTokens)+int64(r.OutputTokens) <= int64(maxContext) {
			continue
		}
		if !truncate {
			return nil, 0, fmt.Errorf("trace row %d (request_id %d): field input_tokens+output_tokens: %d+%d exceeds the engine context of %d tokens (use --truncate or --max-context)",
				i+1, r.RequestID, r.InputTokens, r.OutputTokens, maxContext)
		}
		if out == nil {
			out = append([]trace.Request(nil), reqs...)
		}
		q := &out[i]
		q.OutputTokens = min(q.OutputTokens, int32(maxContext-1))
		q.InputTokens = min(q.InputTokens, int32(maxContext)-q.OutputTokens)
		cut++
	}
	if out == nil {
		return reqs, 0, nil
	}
	return out, cut, nil
}
