// Package php catalogs PHP packages installed with Composer: composer.lock
// and vendor/composer/installed.json (Composer 1 and 2 formats).
package php

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/moat-dev/moat/internal/catalog"
)

// Ecosystem is the OSV ecosystem of Composer packages.
const Ecosystem = "Packagist"

const maxFile = 64 << 20

type cataloger struct{}

// New returns the Composer cataloger.
func New() catalog.Cataloger { return cataloger{} }

func (cataloger) Name() string { return "composer" }

func isLock(p string) bool {
	// A composer.lock shipped inside a dependency under vendor/ describes
	// that package's own development.
	return strings.HasSuffix(p, "/composer.lock") && !strings.Contains(p, "/vendor/")
}

func isInstalled(p string) bool { return strings.HasSuffix(p, "/vendor/composer/installed.json") }

// Wants accepts composer.lock files and Composer's installed.json.
func (cataloger) Wants(p string, mode fs.FileMode, size int64) bool {
	return isLock(p) || isInstalled(p)
}

func (cataloger) Parse(ctx context.Context, f *catalog.File) ([]catalog.Package, error) {
	data, err := f.Bytes(maxFile)
	if err != nil {
		return nil, err
	}
	switch {
	case isLock(f.Path):
		return parseComposerLock(f.Path, data)
	case isInstalled(f.Path):
		return parseInstalled(f.Path, data)
	}
	return nil, errors.New("not a file the composer cataloger reads")
}

type composerPackage struct {
	Name    string          `json:"name"`
	Version string          `json:"version"`
	License json.RawMessage `json:"license"`
}

type composerLock struct {
	Packages    []json.RawMessage `json:"packages"`
	PackagesDev []json.RawMessage `json:"packages-dev"`
}

// parseComposerLock reads composer.lock: "packages" and "packages-dev"
// (reported as dev dependencies).
func parseComposerLock(path string, data []byte) ([]catalog.Package, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	var lock composerLock
	if err := json.Unmarshal(data, &lock); err != nil {
		return nil, catalog.JSONError(data, err)
	}
	c := &collector{path: path, lockfile: "composer.lock", index: map[string]int{}}
	for i, raw := range lock.Packages {
		c.add(raw, false, fmt.Sprintf("packages[%d]", i))
	}
	for i, raw := range lock.PackagesDev {
		c.add(raw, true, fmt.Sprintf("packages-dev[%d]", i))
	}
	return c.result()
}

type installedV2 struct {
	Packages        []json.RawMessage `json:"packages"`
	DevPackageNames []string          `json:"dev-package-names"`
}

// parseInstalled reads vendor/composer/installed.json: a plain array of
// packages (Composer 1) or {"packages": [...], "dev-package-names": [...]}
// (Composer 2).
func parseInstalled(path string, data []byte) ([]catalog.Package, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	var v2 installedV2
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(data, &v2.Packages); err != nil {
			return nil, catalog.JSONError(data, err)
		}
	} else if err := json.Unmarshal(data, &v2); err != nil {
		return nil, catalog.JSONError(data, err)
	}
	dev := map[string]bool{}
	for _, n := range v2.DevPackageNames {
		dev[n] = true
	}
	c := &collector{path: path, index: map[string]int{}}
	for i, raw := range v2.Packages {
		c.addFunc(raw, func(name string) bool { return dev[name] }, fmt.Sprintf("packages[%d]", i))
	}
	return c.result()
}

type collector struct {
	path, lockfile string
	pkgs           []catalog.Package
	index          map[string]int
	bad            []string
}

func (c *collector) add(raw json.RawMessage, dev bool, where string) {
	c.addFunc(raw, func(string) bool { return dev }, where)
}

func (c *collector) addFunc(raw json.RawMessage, isDev func(string) bool, where string) {
	var p composerPackage
	if err := json.Unmarshal(raw, &p); err != nil {
		c.bad = append(c.bad, fmt.Sprintf("%s: %v", where, err))
		return
	}
	if !validName(p.Name) || !validVersion(p.Version) {
		c.bad = append(c.bad, fmt.Sprintf("%s: invalid package name %q or version %q", where, catalog.Clip(p.Name), catalog.Clip(p.Version)))
		return
	}
	dev := isDev(p.Name)
	key := p.Name + "\x00" + p.Version
	if i, ok := c.index[key]; ok {
		if !dev {
			delete(c.pkgs[i].Metadata, "dev")
		}
		return
	}
	md := map[string]string{}
	if c.lockfile != "" {
		md["lockfile"] = c.lockfile
	}
	if dev {
		md["dev"] = "true"
	}
	c.index[key] = len(c.pkgs)
	c.pkgs = append(c.pkgs, catalog.Package{
		Name:      p.Name,
		Version:   p.Version,
		Type:      catalog.TypeComposer,
		Ecosystem: Ecosystem,
		Licenses:  licenses(p.License),
		Locations: []catalog.Location{{Path: c.path}},
		Metadata:  md,
	})
}

func (c *collector) result() ([]catalog.Package, error) {
	for i := range c.pkgs {
		if len(c.pkgs[i].Metadata) == 0 {
			c.pkgs[i].Metadata = nil
		}
	}
	catalog.SortByNameVersion(c.pkgs)
	if len(c.bad) > 0 {
		const max = 5
		msg := strings.Join(c.bad[:min(len(c.bad), max)], "; ")
		if len(c.bad) > max {
			msg += fmt.Sprintf("; and %d more", len(c.bad)-max)
		}
		return c.pkgs, errors.New(msg)
	}
	return c.pkgs, nil
}

// licenses reads "license": an array of SPDX identifiers or a single string.
func licenses(raw json.RawMessage) []string {
	var out []string
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
		return out
	}
	var arr []string
	if json.Unmarshal(raw, &arr) == nil {
		for _, l := range arr {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

// validName accepts Composer names: "vendor/name" of lowercase letters,
// digits, '_', '.', '-' (upper case tolerated).
func validName(n string) bool {
	vendor, name, ok := strings.Cut(n, "/")
	if !ok || vendor == "" || name == "" || strings.Contains(name, "/") {
		return false
	}
	return catalog.ValidToken(n, 255, "_.-/")
}

func validVersion(v string) bool {
	if v == "" || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] == 0x7f {
			return false
		}
	}
	return true
}
