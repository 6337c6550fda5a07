package scan

import (
	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/apk"
	"github.com/moat-dev/moat/internal/catalog/dpkg"
	"github.com/moat-dev/moat/internal/catalog/rpm"
)

// Catalogers returns every cataloger moat ships, in a fixed order.
func Catalogers() []catalog.Cataloger {
	return []catalog.Cataloger{
		dpkg.New(), apk.New(), rpm.New(),
	}
}
