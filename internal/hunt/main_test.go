package hunt_test

import (
	"testing"

	"github.com/ndr-go/ndr/internal/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }
