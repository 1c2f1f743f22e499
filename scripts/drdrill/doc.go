// Package drdrill is the disaster-recovery drill (`make dr-drill`, and a small one in
// `make test`): on private PostgreSQL clusters (testenv.NewClusterWith) archived by
// pgBackRest to a repository of their own, it seeds a data set, takes a full backup, writes
// known rows through the app server's API, runs a bad DELETE, destroys the primary's data
// directory, then restores twice into fresh clusters: to the end of the WAL archive, and to
// the time named just before the DELETE. Each restored primary gets a new streaming replica
// and a new app server, and the drill checks through the API which rows came back. It
// reports the measured RPO (the destruction against the last write that survived), the RTO
// (the destruction to the first write the restored stack accepted), the restore throughput
// and the data set's size, and fails when RPO exceeds 5 minutes or RTO 1 hour.
//
// The flags set the drill's size (go test ./scripts/drdrill -args -h):
//
//	-drill.scale            appserver seed -scale of the data set (the bench's is 0.1)
//	-drill.write            how long the workload writes between the backup and the loss
//	-drill.archive-timeout  archive_timeout of the drilled primary (the dev stack's is 60s)
//
// The drill never touches the dev services of scripts/services.sh.
package drdrill
