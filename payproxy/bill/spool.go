package bill

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Spool copies a downloaded bill into a new temporary file and rewinds it:
// an Alipay zip is read from its end, and a WeChat file is checked against
// its hash before any line is used, so neither is parsed off the wire.
// More than max bytes is a bad bill. The caller removes the file with
// Discard.
func Spool(r io.Reader, pattern string, max int64) (*os.File, error) {
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(f, io.LimitReader(r, max+1))
	switch {
	case err != nil:
		err = fmt.Errorf("downloading the bill: %w", err)
	case n > max:
		err = Bad("larger than %d bytes", max)
	default:
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		Discard(f)
		return nil, err
	}
	return f, nil
}

// Discard closes and removes a spooled file.
func Discard(f *os.File) error {
	return errors.Join(f.Close(), os.Remove(f.Name()))
}
