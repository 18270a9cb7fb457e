package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"
)

// UsageCmd prints an org's usage.
type UsageCmd struct {
	adminStore `embed:""`
	Org        string `required:"" help:"The org."`
}

// Run prints the org's stored memories and bytes and its calls.
func (c *UsageCmd) Run(env *runEnv) error {
	ka, closeFn, err := c.open(env)
	if err != nil {
		return err
	}
	defer closeFn()
	u, err := ka.Usage(env.ctx, c.Org)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "org\t%s\n", u.Org)
	fmt.Fprintf(tw, "memories\t%d\n", u.Memories)
	fmt.Fprintf(tw, "bytes\t%d\n", u.Bytes)
	fmt.Fprintf(tw, "calls today (UTC)\t%d\n", u.CallsDay)
	fmt.Fprintf(tw, "calls last 30 days\t%d\n", u.Calls30d)
	fmt.Fprintf(tw, "calls ever\t%d\n", u.CallsEver)
	return tw.Flush()
}

// AuditCmd prints an org's audit log.
type AuditCmd struct {
	adminStore `embed:""`
	Org        string `help:"The org (required unless --no-org)."`
	NoOrg      bool   `name:"no-org" help:"Show the events of no known org instead: failed logins with credentials that named none."`
	Since      string `default:"24h" help:"How far back, e.g. 24h or 7d."`
	Limit      int    `default:"1000" help:"At most this many events (the newest)."`
}

// Run prints one event per line, oldest first.
func (c *AuditCmd) Run(env *runEnv) error {
	if (c.Org == "") == !c.NoOrg {
		return errors.New("name an org with --org, or pass --no-org for events of no known org")
	}
	d, err := parseKeyAge(c.Since)
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	ka, closeFn, err := c.open(env)
	if err != nil {
		return err
	}
	defer closeFn()
	events, err := ka.AuditLog(env.ctx, c.Org, time.Now().Add(-d), c.Limit)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tACTION\tACTOR\tAGENT\tSCOPE\tTARGET\tCOUNT\tSOURCE\tDETAIL")
	for _, e := range events {
		src := e.Source
		if src == "" {
			src = "(store)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), e.Action, keysDash(e.Actor), keysDash(e.Agent),
			keysDash(e.Scope), keysDash(e.Target), e.Count, src, strconv.Quote(e.Detail))
	}
	return tw.Flush()
}
