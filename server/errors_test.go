package server

import (
	"fmt"
	"testing"

	"github.com/tandemdb/tandem/internal/consensus"
	"github.com/tandemdb/tandem/internal/store"
	"github.com/tandemdb/tandem/wire"
)

// Errors a client can act on get their own codes; "internal error" is for bugs.
func TestErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want wire.ErrCode
	}{
		{fmt.Errorf("exec: %w", store.ErrTxAborted), wire.CodeTxAborted},
		{store.ErrTxDone, wire.CodeNoSuchTx},
		{fmt.Errorf("%w: send several through Exec", store.ErrNotOneStatement), wire.CodeBadRequest},
		{fmt.Errorf("%w: node 9 is not a member", consensus.ErrMembership), wire.CodeBadRequest},
		{store.ErrTxTimeout, wire.CodeTxTimeout},
		{fmt.Errorf("something unexpected"), wire.CodeInternal},
	} {
		m, ok := errorMsg(tc.err).(*wire.Error)
		if !ok || m.Code != tc.want {
			t.Errorf("%v: answered %+v, want code %v", tc.err, errorMsg(tc.err), tc.want)
		}
	}
}
