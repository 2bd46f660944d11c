// Command iceberg-reader is an independent Iceberg client for Strata's tests: it uses
// apache/iceberg-go (not Strata's code) to load tables through an Iceberg REST catalog,
// scan them and print rows as JSON lines, and to create a table and append rows.
//
//	iceberg-reader scan   -uri URI -warehouse W -table ns.name [-snapshot ID] [-filter col=value]
//	iceberg-reader append -uri URI -warehouse W -table ns.name -rows '[{"id":1,"name":"a"}]' [-create]
//	iceberg-reader race   -uri URI -warehouse W -table ns.name -rows '[…]' -rows2 '[…]'
//
// race: two writers load the same table version and each appends; the second commit must
// fail with the catalog's 409 (CommitFailed), and its writer retries on the new metadata.
//
// The bearer key comes from STRATA_KEY; S3 settings come from the catalog (config and
// vended credentials), plus any S3_* given in the environment (endpoint, keys) for
// stores without credential vending.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/catalog/rest"
	icebergio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud"
	"github.com/apache/iceberg-go/table"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: iceberg-reader scan|append|snapshots [flags]"))
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	uri := fs.String("uri", "", "REST catalog URI")
	warehouse := fs.String("warehouse", "", "warehouse")
	ident := fs.String("table", "", "namespace.name (the last dot separates the name)")
	snapshot := fs.Int64("snapshot", 0, "snapshot id to scan (default: current)")
	filter := fs.String("filter", "", "col=value row filter (value compared as the column's type)")
	rows := fs.String("rows", "[]", "JSON rows to append")
	rows2 := fs.String("rows2", "[]", "JSON rows the second writer appends (race)")
	create := fs.Bool("create", false, "create the table first (id long, name string, partitioned by identity(name))")
	_ = fs.Parse(os.Args[2:])
	ctx := context.Background()

	props := iceberg.Properties{}
	for env, key := range map[string]string{
		"S3_ENDPOINT": icebergio.S3EndpointURL, "S3_ACCESS_KEY_ID": icebergio.S3AccessKeyID,
		"S3_SECRET_ACCESS_KEY": icebergio.S3SecretAccessKey, "S3_REGION": icebergio.S3Region,
	} {
		if v := os.Getenv(env); v != "" {
			props[key] = v
		}
	}
	opts := []rest.Option{rest.WithOAuthToken(os.Getenv("STRATA_KEY")), rest.WithWarehouseLocation(*warehouse)}
	if len(props) > 0 {
		opts = append(opts, rest.WithAdditionalProps(props))
	}
	cat, err := rest.NewCatalog(ctx, "strata", *uri, opts...)
	if err != nil {
		fail(err)
	}
	id := splitIdent(*ident)

	switch os.Args[1] {
	case "scan":
		tbl, err := cat.LoadTable(ctx, id)
		if err != nil {
			fail(err)
		}
		var sopts []table.ScanOption
		if *snapshot != 0 {
			sopts = append(sopts, table.WithSnapshotID(*snapshot))
		}
		if *filter != "" {
			col, val, _ := strings.Cut(*filter, "=")
			sopts = append(sopts, table.WithRowFilter(equalTo(tbl, col, val)))
		}
		scan := tbl.Scan(sopts...)
		tasks, err := scan.PlanFiles(ctx)
		if err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "files scanned: %d\n", len(tasks))
		at, err := scan.ToArrowTable(ctx)
		if err != nil {
			fail(err)
		}
		defer at.Release()
		printTable(at)
	case "snapshots":
		tbl, err := cat.LoadTable(ctx, id)
		if err != nil {
			fail(err)
		}
		out := []map[string]any{}
		for _, s := range tbl.Metadata().Snapshots() {
			out = append(out, map[string]any{"snapshot-id": s.SnapshotID, "timestamp-ms": s.TimestampMs, "summary": s.Summary})
		}
		_ = json.NewEncoder(os.Stdout).Encode(out)
	case "race":
		a, err := cat.LoadTable(ctx, id)
		if err != nil {
			fail(err)
		}
		b, err := cat.LoadTable(ctx, id)
		if err != nil {
			fail(err)
		}
		first, err := appendRows(ctx, a, *rows)
		if err != nil {
			fail(fmt.Errorf("first writer: %w", err))
		}
		_, conflict := appendRows(ctx, b, *rows2)
		if conflict == nil {
			fail(errors.New("second writer committed on a stale table: no conflict"))
		}
		if !errors.Is(conflict, table.ErrCommitFailed) {
			fail(fmt.Errorf("second writer: expected a commit conflict, got %w", conflict))
		}
		fresh, err := cat.LoadTable(ctx, id)
		if err != nil {
			fail(err)
		}
		retried, err := appendRows(ctx, fresh, *rows2)
		if err != nil {
			fail(fmt.Errorf("second writer's retry: %w", err))
		}
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
			"first": first.CurrentSnapshot().SnapshotID, "conflict": conflict.Error(), "retried": retried.CurrentSnapshot().SnapshotID,
		})
	case "append":
		var tbl *table.Table
		if *create {
			schema := iceberg.NewSchema(0,
				iceberg.NestedField{ID: 1, Name: "id", Type: iceberg.PrimitiveTypes.Int64, Required: true},
				iceberg.NestedField{ID: 2, Name: "name", Type: iceberg.PrimitiveTypes.String},
			)
			spec := iceberg.NewPartitionSpec(iceberg.PartitionField{SourceIDs: []int{2}, FieldID: 1000, Name: "name", Transform: iceberg.IdentityTransform{}})
			tbl, err = cat.CreateTable(ctx, id, schema, catalog.WithPartitionSpec(&spec))
		} else {
			tbl, err = cat.LoadTable(ctx, id)
		}
		if err != nil {
			fail(err)
		}
		next, err := appendRows(ctx, tbl, *rows)
		if err != nil {
			fail(err)
		}
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"snapshot-id": next.CurrentSnapshot().SnapshotID, "metadata-location": next.MetadataLocation()})
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}

// appendRows appends JSON rows to a table in one transaction and commits it through the catalog.
func appendRows(ctx context.Context, tbl *table.Table, rows string) (*table.Table, error) {
	sc, err := table.SchemaToArrowSchema(tbl.Schema(), nil, false, false)
	if err != nil {
		return nil, err
	}
	rec, _, err := array.RecordFromJSON(memory.DefaultAllocator, sc, strings.NewReader(rows))
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	at := array.NewTableFromRecords(sc, []arrow.RecordBatch{rec})
	defer at.Release()
	txn := tbl.NewTransaction()
	if err := txn.AppendTable(ctx, at, 1024, iceberg.Properties{"writer": "iceberg-go"}); err != nil {
		return nil, err
	}
	return txn.Commit(ctx)
}

func splitIdent(s string) table.Identifier {
	i := strings.LastIndex(s, ".")
	if i < 0 {
		fail(fmt.Errorf("-table %q: write namespace.name", s))
	}
	return append(strings.Split(s[:i], "."), s[i+1:])
}

func equalTo(tbl *table.Table, col, val string) iceberg.BooleanExpression {
	f, ok := tbl.Schema().FindFieldByName(col)
	if !ok {
		fail(fmt.Errorf("no column %q", col))
	}
	switch f.Type.(type) {
	case iceberg.Int32Type, iceberg.Int64Type:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			fail(err)
		}
		return iceberg.EqualTo(iceberg.Reference(col), n)
	case iceberg.Float64Type:
		n, err := strconv.ParseFloat(val, 64)
		if err != nil {
			fail(err)
		}
		return iceberg.EqualTo(iceberg.Reference(col), n)
	default:
		return iceberg.EqualTo(iceberg.Reference(col), val)
	}
}

// printTable writes one JSON object per row, columns by name.
func printTable(t arrow.Table) {
	rdr := array.NewTableReader(t, 1024)
	defer rdr.Release()
	enc := json.NewEncoder(os.Stdout)
	for rdr.Next() {
		rec := rdr.RecordBatch()
		b, err := rec.MarshalJSON()
		if err != nil {
			fail(err)
		}
		var rows []map[string]any
		if err := json.Unmarshal(b, &rows); err != nil {
			fail(err)
		}
		for _, r := range rows {
			_ = enc.Encode(r)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "iceberg-reader:", err)
	os.Exit(1)
}
