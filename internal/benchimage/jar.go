package benchimage

import (
	"archive/zip"
	"bytes"
	"fmt"
	"strings"
	"time"
)

var fixedTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// jarSpec describes one Java archive.
type jarSpec struct {
	group, artifact, version string
	classes                  int
	manifestOnly             bool
	// boot makes a Spring Boot fat jar holding nested (stored) jars.
	boot   bool
	nested []jarSpec
}

// jar builds the archive: a manifest, Maven metadata (unless manifestOnly)
// and class files of machine-code-like content.
func (p *planner) jar(s jarSpec) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	put := func(name string, method uint16, data []byte) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: fixedTime})
		if err != nil {
			panic(err) // writing to memory cannot fail
		}
		w.Write(data)
	}
	var mf strings.Builder
	mf.WriteString("Manifest-Version: 1.0\r\nCreated-By: Maven JAR Plugin 3.3.0\r\nBuild-Jdk-Spec: 17\r\n")
	if s.boot {
		fmt.Fprintf(&mf, "Main-Class: org.springframework.boot.loader.launch.JarLauncher\r\nStart-Class: %s.Application\r\nSpring-Boot-Version: 3.2.5\r\nSpring-Boot-Classes: BOOT-INF/classes/\r\nSpring-Boot-Lib: BOOT-INF/lib/\r\n", s.group)
	}
	fmt.Fprintf(&mf, "Implementation-Title: %s\r\nImplementation-Version: %s\r\n", s.artifact, s.version)
	if !s.manifestOnly {
		fmt.Fprintf(&mf, "Implementation-Vendor-Id: %s\r\n", s.group)
	}
	mf.WriteString("\r\n")
	put("META-INF/MANIFEST.MF", zip.Deflate, []byte(mf.String()))
	if !s.manifestOnly {
		base := fmt.Sprintf("META-INF/maven/%s/%s/", s.group, s.artifact)
		put(base+"pom.properties", zip.Deflate, []byte(fmt.Sprintf("#Created by Apache Maven 3.9.6\nartifactId=%s\ngroupId=%s\nversion=%s\n", s.artifact, s.group, s.version)))
		put(base+"pom.xml", zip.Deflate, []byte(fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>%s</groupId>
  <artifactId>%s</artifactId>
  <version>%s</version>
  <packaging>jar</packaging>
</project>
`, s.group, s.artifact, s.version)))
	}
	pkgDir := strings.ReplaceAll(s.group, ".", "/") + "/" + strings.ReplaceAll(s.artifact, "-", "")
	if s.boot {
		pkgDir = "BOOT-INF/classes/" + pkgDir
	}
	for i := 0; i < s.classes; i++ {
		name := fmt.Sprintf("%s/%s%d.class", pkgDir, strings.Title(randWord(p.r, 2)), i) //nolint:staticcheck // ASCII names
		body := p.pl.slice(poolBin, p.seed, s.artifact+name, int(logNormal(p.r, 3000, 1.0, 200, 256<<10)))
		put(name, zip.Deflate, append([]byte{0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 61}, body...))
	}
	for _, n := range s.nested {
		put(fmt.Sprintf("BOOT-INF/lib/%s-%s.jar", n.artifact, n.version), zip.Store, p.jar(n))
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
