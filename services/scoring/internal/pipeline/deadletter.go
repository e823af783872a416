package pipeline

import (
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/lodestar-cs/lodestar/pkg/natsx"
)

// Headers of a dead letter, beside Nats-Msg-Id.
const (
	// HeaderReason says why the message or event could not be processed.
	HeaderReason = "Lodestar-Reason"
	// HeaderSource is "EVENTS:<stream sequence>" of the message it came from.
	HeaderSource = "Lodestar-Source"
	// HeaderSourceIndex is the event's index in its batch, "all" when the
	// whole message could not be decoded.
	HeaderSourceIndex = "Lodestar-Source-Index"
	// HeaderTenant is the tenant of the events.
	HeaderTenant = "Lodestar-Tenant"
)

// deadLetters returns the DEADLETTER messages for what could not be decoded
// of the EVENTS message at seq on subject: each bad event, or the whole
// message (data) when its framing is corrupt (whole is then the error).
// Their Nats-Msg-Ids name the source, so the same dead letters derived
// again after a restart are stored once within the duplicate window.
func deadLetters(subject string, seq uint64, data []byte, whole error, bad []badEvent) []*nats.Msg {
	// The subject is lodestar.events.<tenant>.<partition>.
	tenant := strings.TrimPrefix(subject, natsx.EventsSubjectPrefix+".")
	if i := strings.LastIndexByte(tenant, '.'); i >= 0 {
		tenant = tenant[:i]
	}
	source := natsx.StreamEvents + ":" + strconv.FormatUint(seq, 10)
	msg := func(index string, payload []byte, err error) *nats.Msg {
		m := nats.NewMsg(natsx.DeadLetterSubject("events", tenant))
		m.Data = payload
		m.Header.Set(nats.MsgIdHdr, "deadletter:"+source+":"+index)
		m.Header.Set(HeaderTenant, tenant)
		m.Header.Set(HeaderSource, source)
		m.Header.Set(HeaderSourceIndex, index)
		m.Header.Set(HeaderReason, err.Error())
		return m
	}
	if whole != nil {
		return []*nats.Msg{msg("all", data, whole)}
	}
	out := make([]*nats.Msg, len(bad))
	for i, b := range bad {
		out[i] = msg(strconv.Itoa(b.index), b.data, b.err)
	}
	return out
}
