package scan

import (
	"github.com/moat-dev/moat/internal/catalog"
	"github.com/moat-dev/moat/internal/catalog/apk"
	"github.com/moat-dev/moat/internal/catalog/dotnet"
	"github.com/moat-dev/moat/internal/catalog/dpkg"
	"github.com/moat-dev/moat/internal/catalog/gobinary"
	"github.com/moat-dev/moat/internal/catalog/java"
	"github.com/moat-dev/moat/internal/catalog/npm"
	"github.com/moat-dev/moat/internal/catalog/php"
	"github.com/moat-dev/moat/internal/catalog/python"
	"github.com/moat-dev/moat/internal/catalog/rpm"
	"github.com/moat-dev/moat/internal/catalog/ruby"
	"github.com/moat-dev/moat/internal/catalog/rust"
)

// Catalogers returns every cataloger moat ships, in a fixed order.
func Catalogers() []catalog.Cataloger {
	return []catalog.Cataloger{
		dpkg.New(), apk.New(), rpm.New(),
		gobinary.New(), rust.New(),
		npm.New(), python.New(), java.New(), ruby.New(), php.New(), dotnet.New(),
	}
}
