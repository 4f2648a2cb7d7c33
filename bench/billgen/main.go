// Command billgen writes a synthetic bill file as a provider's download
// serves it (paysim's SyntheticDay, streamed: the Alipay zip or the WeChat
// CSV), for bench/bills.sh:
//
//	billgen -channel alipay -lines 1000000 -out alipay.zip
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tollgate/tollgate/payproxy/bill/billtest"
)

func main() {
	channel := flag.String("channel", "alipay", "alipay or wechat")
	lines := flag.Int("lines", 1_000_000, "detail lines")
	out := flag.String("out", "", "file to write")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "billgen: -out is required")
		os.Exit(2)
	}
	took, err := billtest.WriteSynthetic(*out, *channel, *lines)
	if err != nil {
		fmt.Fprintln(os.Stderr, "billgen:", err)
		os.Exit(1)
	}
	st, err := os.Stat(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "billgen:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %d lines: %d bytes written in %.1f s\n", *channel, *lines, st.Size(), took.Seconds())
}
