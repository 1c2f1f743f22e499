package terraform

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// TestDisasterRecovery checks, per environment, what a restore needs (RPO 5 min, RTO 1 h;
// docs/runbooks/disaster-recovery.md): the days of automated backups and point-in-time
// recovery, the production backups replicated to backup_region with the secrets (the
// restored database's master password is the replicated secret's), deletion protection and
// a final snapshot where the data matters, Valkey snapshots, and bind values kept out of
// the database logs. Each environment's values are evaluated through the module resources
// that apply them.
func TestDisasterRecovery(t *testing.T) {
	str, null := cty.StringVal, cty.NullVal(cty.String)
	cases := []struct {
		env                 string
		retentionDays       int64
		replicated          bool
		deletionProtection  bool
		finalSnapshot       cty.Value // final_snapshot_identifier
		valkeySnapshotDays  int64
		secretReplicaRegion cty.Value
	}{
		{"dev", 7, false, false, null, 0, null},
		{"staging", 14, false, true, str("muejam-staging-final"), 1, null},
		{"production", 30, true, true, str("muejam-production-final"), 7, str("eu-central-1")},
	}
	rds := loadModule(t, filepath.Join(modulesDir, "rds"))
	secrets := loadModule(t, filepath.Join(modulesDir, "secrets"))
	valkey := loadModule(t, filepath.Join(modulesDir, "valkey"))
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			dir := filepath.Join(environmentsDir, c.env)
			m := loadModule(t, dir)
			ctx := evalContext(t, m, tfvars(t, dir))
			vars := ctx.Variables["var"]
			if c.replicated && vars.GetAttr("backup_region").RawEquals(vars.GetAttr("region")) {
				t.Errorf("%s: backups are replicated to backup_region, which must differ from region", dir)
			}

			// RDS: retention and point-in-time recovery, cross-region replication, deletion
			// protection and the final snapshot.
			args := map[string]cty.Value{}
			for _, arg := range []string{"name", "backup_retention_days", "backup_replication", "deletion_protection"} {
				args[arg] = moduleArg(t, m, ctx, "rds", arg)
			}
			rctx := evalContext(t, rds, args)
			count := int64(0)
			if c.replicated {
				count = 1
			}
			for _, w := range []struct {
				res, attr string
				want      cty.Value
			}{
				{"aws_db_instance.primary", "backup_retention_period", cty.NumberIntVal(c.retentionDays)},
				{"aws_db_instance.primary", "deletion_protection", cty.BoolVal(c.deletionProtection)},
				{"aws_db_instance.primary", "skip_final_snapshot", cty.BoolVal(!c.deletionProtection)},
				{"aws_db_instance.primary", "final_snapshot_identifier", c.finalSnapshot},
				{"aws_db_instance_automated_backups_replication.this", "count", cty.NumberIntVal(count)},
				{"aws_db_instance_automated_backups_replication.this", "retention_period", cty.NumberIntVal(c.retentionDays)},
				{"aws_kms_key.backup", "count", cty.NumberIntVal(count)},
			} {
				if got := eval(t, resourceAttr(t, rds, w.res, w.attr), rctx); !got.RawEquals(w.want) {
					t.Errorf("%s: %s.%s = %s, want %s", dir, w.res, w.attr, show(got), show(w.want))
				}
			}
			if got := exprAt(rds.resources["aws_db_instance_automated_backups_replication.this"].Body, []string{"provider"}); got != "aws.backup" {
				t.Errorf("modules/rds: the backups are replicated through provider %s, want aws.backup (the backup_region)", got)
			}

			// Secrets Manager: every secret replicated where the backups are.
			region := moduleArg(t, m, ctx, "secrets", "replica_region")
			if !region.RawEquals(c.secretReplicaRegion) {
				t.Errorf("%s: module secrets: replica_region = %s, want %s", dir, show(region), show(c.secretReplicaRegion))
			}
			sctx := evalContext(t, secrets, map[string]cty.Value{"replica_region": region})
			for name, res := range secrets.resources {
				if res.Type != "aws_secretsmanager_secret" {
					continue
				}
				forEach := dynamicForEach(res.Body, "replica")
				if forEach == nil {
					t.Errorf("modules/secrets: %s has no dynamic replica block", name)
					continue
				}
				want := cty.ListValEmpty(cty.String)
				if !c.secretReplicaRegion.IsNull() {
					want = cty.ListVal([]cty.Value{c.secretReplicaRegion})
				}
				if got := eval(t, forEach, sctx); got.LengthInt() != want.LengthInt() || (got.LengthInt() == 1 && !got.Index(cty.NumberIntVal(0)).RawEquals(c.secretReplicaRegion)) {
					t.Errorf("%s: %s is replicated to %s, want %s", dir, name, show(got), show(want))
				}
			}

			// Valkey: snapshots (its data is rebuildable: counters and cache entries).
			days := moduleArg(t, m, ctx, "valkey", "snapshot_retention_days")
			if !days.RawEquals(cty.NumberIntVal(c.valkeySnapshotDays)) {
				t.Errorf("%s: module valkey: snapshot_retention_days = %s, want %d", dir, show(days), c.valkeySnapshotDays)
			}
		})
	}
	if got := exprAt(valkey.resources["aws_elasticache_replication_group.this"].Body, []string{"snapshot_retention_limit"}); got != "var.snapshot_retention_days" {
		t.Errorf("modules/valkey: snapshot_retention_limit = %s, want var.snapshot_retention_days", got)
	}

	// No bind values in the database logs (slow statements and errors, exported to
	// CloudWatch Logs).
	params := map[string]string{}
	for _, b := range rds.resources["aws_db_parameter_group.this"].Body.Blocks {
		if b.Type == "parameter" {
			params[eval(t, b.Body.Attributes["name"].Expr, nil).AsString()] = eval(t, b.Body.Attributes["value"].Expr, nil).AsString()
		}
	}
	for _, name := range []string{"log_parameter_max_length", "log_parameter_max_length_on_error"} {
		if params[name] != "0" {
			t.Errorf("modules/rds: aws_db_parameter_group.this sets %s = %q, want \"0\" (no bind values in the logs)", name, params[name])
		}
	}
}

// dynamicForEach returns the for_each expression of the dynamic block that generates the
// blocks of type name in body, or nil.
func dynamicForEach(body *hclsyntax.Body, name string) hclsyntax.Expression {
	for _, b := range body.Blocks {
		if b.Type == "dynamic" && len(b.Labels) == 1 && b.Labels[0] == name {
			if a, ok := b.Body.Attributes["for_each"]; ok {
				return a.Expr
			}
		}
	}
	return nil
}
