package deferred

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// DestinationStats is what a relay decided for one destination.
type DestinationStats struct {
	Topic string
	// Open says the relay delivers to it now, at Rate records per second.
	Open bool
	Rate float64
	// Room is the rate its consumers' ok signal suggests (the room
	// producers and the relay may fill), and Others the rate the
	// destination receives from everyone but this relay: the relay fills
	// what Others leave of Room (at most SuggestedShare of it).
	Room, Others float64
	// Reason says why, in words.
	Reason string
}

// destGate is a relay's state of one destination: the rates it measures
// and what it decided. It decides without I/O or a clock of its own;
// the relay guards it (gmu), but relayed, counted by the handlers.
type destGate struct {
	incoming lagmonitor.RateMeter // records appended to the destination
	own      lagmonitor.RateMeter // records this relay produced to it
	relayed  atomic.Uint64

	openAt time.Time // when the gate last opened (zero while closed)
	limit  float64   // the rate decided; 0: closed
	room   float64
	others float64
	reason string
}

// gateTau is the time constant of a gate's rates.
const gateTau = 5 * time.Second

func newDestGate() *destGate {
	return &destGate{incoming: lagmonitor.NewRateMeter(gateTau), own: lagmonitor.NewRateMeter(gateTau)}
}

// decide sets the gate's rate at now from p, the destination's pressure:
// 0 (closed) without a live signal (unless WithoutSignal: Rate), above
// ok, or when the producers fill the room; else the room left by the
// others, at most SuggestedShare × room and Rate, climbing from a tenth
// of it over Ramp since the gate opened. A signal at ok that suggests no
// room (capacity unknown) gives DefaultProbeRate while the consumers
// keep up. It returns the rate.
func (g *destGate) decide(now time.Time, p lagmonitor.Pressure, c *RelayConfig) float64 {
	live := p.Instance != ""
	g.room, g.others = p.Rate, 0
	if g.incoming.Known() && g.own.Known() {
		g.others = max(g.incoming.Rate()-g.own.Rate(), 0)
	}
	var lim float64
	switch {
	case !live && c.WithoutSignal:
		lim, g.reason = c.Rate, "no live signal: relaying at Rate without one (WithoutSignal)"
	case !live:
		g.reason = "no live signal: waiting for one that says there is room (RelayConfig.WithoutSignal relays without)"
	case p.Level > lagmonitor.LevelOK:
		g.reason = fmt.Sprintf("level %s (%s): waiting for ok", p.Level, p.Reason)
	case g.room <= 0:
		lim, g.reason = min(DefaultProbeRate, c.Rate), "ok, no room suggested yet (capacity unknown): probing at "+fmtRate(DefaultProbeRate)+"/s"
	default:
		free := min(g.room-g.others, c.SuggestedShare*g.room, c.Rate)
		if free <= 0 {
			g.reason = fmt.Sprintf("ok, but producers fill the room (%s/s of %s/s)", fmtRate(g.others), fmtRate(g.room))
			break
		}
		if g.openAt.IsZero() {
			g.openAt = now
		}
		progress := min(float64(now.Sub(g.openAt))/float64(c.Ramp), 1)
		lim = free * (0.1 + 0.9*progress)
		g.reason = fmt.Sprintf("ok: %s/s of the %s/s left of a room of %s/s (%.0f%% of the ramp)", fmtRate(lim), fmtRate(free), fmtRate(g.room), 100*progress)
	}
	if lim <= 0 {
		g.openAt = time.Time{} // climbs from low again next time
	}
	g.limit = lim
	return lim
}

func fmtRate(r float64) string { return strconv.FormatFloat(r, 'g', 3, 64) }
