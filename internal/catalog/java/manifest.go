package java

import (
	"bytes"
	"fmt"
	"strings"
)

// Manifest is the main section of a jar's META-INF/MANIFEST.MF, keyed by
// attribute name in lower case (manifest names are case-insensitive).
type Manifest map[string]string

// Get returns the value of the named attribute (any case).
func (m Manifest) Get(name string) string { return m[strings.ToLower(name)] }

// ParseManifest reads the main section of a JAR manifest: "Name: value"
// lines, continuation lines starting with one space, ended by an empty line.
// Malformed lines are skipped and reported in the error; the attributes that
// could be read are returned with it.
func ParseManifest(data []byte) (Manifest, error) {
	m := Manifest{}
	var bad []string
	key := ""
	var val strings.Builder
	flush := func() {
		if key != "" {
			m[strings.ToLower(key)] = strings.TrimSpace(val.String())
		}
		key = ""
		val.Reset()
	}
	lineNo := 0
	for len(data) > 0 {
		var line []byte
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			line, data = data, nil
		} else {
			line = data[:i]
			if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			data = data[i+1:]
		}
		lineNo++
		if len(line) == 0 {
			break // end of the main section
		}
		if line[0] == ' ' {
			if key == "" {
				bad = append(bad, fmt.Sprintf("line %d: continuation without an attribute", lineNo))
				continue
			}
			val.Write(line[1:])
			continue
		}
		flush()
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			bad = append(bad, fmt.Sprintf("line %d: not a \"Name: value\" attribute", lineNo))
			continue
		}
		key = string(name)
		val.Write(bytes.TrimPrefix(value, []byte(" ")))
	}
	flush()
	if len(bad) > 0 {
		if len(bad) > 5 {
			bad = append(bad[:5], fmt.Sprintf("and %d more", len(bad)-5))
		}
		return m, fmt.Errorf("malformed manifest: %s", strings.Join(bad, "; "))
	}
	return m, nil
}

// PomProperties holds the coordinates of a META-INF/maven/**/pom.properties.
type PomProperties struct {
	GroupID, ArtifactID, Version string
}

// ParsePomProperties reads a Java properties file written by Maven
// ("key=value" lines, "#" comments). Only groupId, artifactId and version are
// kept; a file missing one of them gives an error.
func ParsePomProperties(data []byte) (PomProperties, error) {
	var p PomProperties
	for len(data) > 0 {
		var line []byte
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' || line[0] == '!' {
			continue
		}
		i = bytes.IndexAny(line, "=:")
		if i < 0 {
			continue
		}
		k := string(bytes.TrimSpace(line[:i]))
		v := string(bytes.TrimSpace(line[i+1:]))
		switch k {
		case "groupId":
			p.GroupID = v
		case "artifactId":
			p.ArtifactID = v
		case "version":
			p.Version = v
		}
	}
	var missing []string
	if p.GroupID == "" {
		missing = append(missing, "groupId")
	}
	if p.ArtifactID == "" {
		missing = append(missing, "artifactId")
	}
	if p.Version == "" {
		missing = append(missing, "version")
	}
	if len(missing) > 0 {
		return p, fmt.Errorf("pom.properties lacks %s", strings.Join(missing, ", "))
	}
	return p, nil
}

// NameVersionFromFileName splits an archive file name such as
// "commons-lang3-3.12.0.jar" into "commons-lang3" and "3.12.0". The version
// starts at the last "-" followed by a digit whose remainder contains a dot
// (so "log4j-1.2-api-2.17.1" gives "log4j-1.2-api", "2.17.1" and
// "jackson-core-2.13.4-1" gives "jackson-core", "2.13.4-1"), or failing that
// at the last "-" followed by a digit. ok is false when there is none.
func NameVersionFromFileName(base string) (name, version string, ok bool) {
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	cut, fallback := -1, -1
	for i := len(base) - 2; i > 0; i-- {
		if base[i] != '-' || base[i+1] < '0' || base[i+1] > '9' {
			continue
		}
		if fallback < 0 {
			fallback = i
		}
		if strings.IndexByte(base[i+1:], '.') >= 0 {
			cut = i
			break
		}
	}
	if cut < 0 {
		cut = fallback
	}
	if cut <= 0 {
		return "", "", false
	}
	return base[:cut], base[cut+1:], true
}
