package image

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FromV1 opens an image held as a go-containerregistry v1.Image (for
// example one read from a registry's own storage); name is how the image
// is reported and source the kind of place it came from.
func FromV1(img v1.Image, name, source string) (*Image, error) {
	im := &Image{Name: name, Source: source, Reference: name}
	if err := fromV1(img, im); err != nil {
		return nil, err
	}
	return im, nil
}
