//go:build race

package proxy_test

// raceEnabled: the race detector slows everything several times over, so
// timing expectations are relaxed under it.
const raceEnabled = true
