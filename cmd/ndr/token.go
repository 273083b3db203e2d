package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/ndr-go/ndr/ingest/server"
)

// runToken manages per-sensor bearer tokens.
//
//	ndr token new --sensor ID   a fresh token (first line) and its tokens-file line (second)
//	ndr token hash              the tokens-file form of a token read from stdin
func runToken(ctx context.Context, args []string, env *environment) error {
	if len(args) == 0 {
		return usageErr("ndr token new --sensor ID | ndr token hash < token")
	}
	switch args[0] {
	case "new":
		return runTokenNew(ctx, args[1:], env)
	case "hash":
		return runTokenHash(ctx, args[1:], env)
	}
	return usageErr("unknown token command %q (new, hash)", args[0])
}

func runTokenNew(_ context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "token new", "")
	sensor := fs.String("sensor", "", "sensor id the token writes as (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	tok := server.NewToken()
	line, err := tokenLine(*sensor, tok)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, tok)
	fmt.Fprintln(env.stdout, line)
	fmt.Fprintf(env.stderr, "first line: the token; give it to sensor %s only (ndr send --token-file FILE, or NDR_TOKEN). It is stored nowhere.\n"+
		"second line: add it to the tokens file of ndr serve (--tokens); serve reads the file again within --tokens-reload.\n", *sensor)
	return nil
}

func runTokenHash(_ context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "token hash", "")
	sensor := fs.String("sensor", "", "also print the tokens-file line for this sensor")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sc := bufio.NewScanner(env.stdin)
	if !sc.Scan() || strings.TrimSpace(sc.Text()) == "" {
		return usageErr("no token on stdin")
	}
	tok := strings.TrimSpace(sc.Text())
	if *sensor == "" {
		fmt.Fprintln(env.stdout, server.HashToken(tok))
		return nil
	}
	line, err := tokenLine(*sensor, tok)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, line)
	return nil
}

// tokenLine is the tokens-file line of tok for sensor, checked by the
// parser serve uses.
func tokenLine(sensor, tok string) (string, error) {
	if sensor == "" {
		return "", usageErr("--sensor is required")
	}
	line := sensor + " " + server.HashToken(tok)
	if _, err := server.ParseTokens(strings.NewReader(line), "--sensor"); err != nil {
		return "", usageErr("%v", err)
	}
	return line, nil
}
