// Package consensus replicates Tandem's log with etcd's Raft (go.etcd.io/raft/v3), keeps it
// on disk with etcd's WAL and snap packages, and moves messages between nodes.
//
// # Using it
//
//	tr := consensus.NewTCPTransport(consensus.TCPConfig{Addr: "10.0.0.1:9001", Dialer: tlsDial})
//	n, err := consensus.Start(consensus.Config{
//		ID: 1, Addr: "10.0.0.1:9001", Dir: "/var/lib/tandem/raft",
//		Bootstrap:    true, // first node of a new cluster only; others start empty and are added
//		StateMachine: store, Transport: tr, Logger: log,
//	})
//	// The listener reads "TNDP" and hands peer connections over: go tr.ServeConn(conn)
//	term, err := n.LeaderReady(ctx)      // leader, and every entry before its term applied
//	err = n.Propose(ctx, entry)          // leader only; the outcome arrives through Apply
//	idx, err := n.ReadIndex(ctx)         // linearizable reads once applied >= idx
//	err = n.AddMember(ctx, 2, "10.0.0.2:9001") // learner; promoted when caught up
//	n.Stop()
//
// # The raft loop
//
// One goroutine owns the raft.Node. It ticks it from a time.Ticker and handles each Ready:
//
//	if leader { send(rd.Messages) }        // overlap the leader's fsync with replication
//	if snapshot { install it (apply goroutine), then snap file + WAL snapshot record }
//	wal.Save(rd.HardState, rd.Entries)     // fsync
//	memoryStorage.ApplySnapshot / SetHardState / Append
//	if !leader { send(rd.Messages) }       // followers and candidates persist first
//	resolve rd.ReadStates; queue rd.CommittedEntries to the apply goroutine (bounded)
//	node.Advance()
//
// The leader may send before its own fsync because raft counts the leader towards the commit
// quorum only after Advance; committed entries reach the apply goroutine only after the WAL
// write of the same Ready, so nothing is applied that is not durable locally.
//
// # The apply goroutine
//
// It calls StateMachine.Apply with every committed entry in order (empty and conf-change
// entries with nil Data), applies conf changes to raft (ApplyConfChange), keeps the member
// address book (each conf change's Context is JSON {id, addr}) and the transport's peers in
// line, and every SnapshotEvery entries asks the state machine for SaveSnapshot into
// Dir/snap/db-<index>/. The raft snapshot's Data is only a JSON description (index, term,
// members with addresses and roles, file names and sizes); it is saved with the snap package
// and recorded in the WAL, MemoryStorage is compacted keeping CompactKeep entries for slow
// followers, and older snapshots (snap files, db dirs, WAL segments) are deleted, keeping 2.
// Adding a member after the log was compacted forces a snapshot: raft refuses to install a
// snapshot whose configuration lacks the receiver.
//
// An Apply error is a divergence: the node stops applying, Status().Healthy turns false with
// the reason in Problem, it is logged at Error level, and Propose, ReadIndex and LeaderReady
// return ErrDiverged from then on.
//
// # Snapshots between nodes
//
// A MsgSnap carries only the description. The transport streams the files of db-<index>
// after it (TCP: on a connection of its own; each file as name, size, bytes, crc32c), the
// receiver writes them to Dir/snap/recv-<index>/, fsyncs, and only then hands the message to
// raft. When Ready carries the snapshot the apply goroutine copies recv-<index> to
// db-<index> (so this node can serve it later), calls RestoreSnapshot(recv-<index>), and only
// then is the snapshot recorded in the WAL: the WAL never names a snapshot the state machine
// does not hold. The sender reports SnapshotFinish or SnapshotFailure to raft.
//
// # Restart
//
// If Dir/wal exists the node loads the newest snapshot that the WAL knows of
// (snap.LoadNewestAvailable over wal.ValidSnapshotEntries), opens the WAL at it, reads it
// all (repairing a torn tail once), and rebuilds MemoryStorage from both. raft.Config.Applied
// is the snapshot index, so the log after it is re-fed to Apply; the state machine skips
// entries it already holds (its files are durable on their own). RestoreSnapshot is called
// on restart only when the state machine implements AppliedIndexer and reports an index below
// the snapshot's (crash before its state reached disk); it then gets a copy of db-<index>.
// Members come from the snapshot description plus the replayed conf changes.
//
// # Membership
//
// Bootstrap starts a one-voter cluster (raft.StartNode with this node as the only peer). A
// node started with an empty Dir and no Bootstrap waits with an empty configuration until a
// leader adds it: AddMember proposes ConfChangeAddLearnerNode, and the leader promotes a
// learner to voter once its Match >= commit - CatchUpMargin, one conf change at a time.
// RemoveMember and TransferLeadership wait for their effect or ctx. TCP peers announce their
// address when they connect, so a new node can answer the leader before it has replayed the
// conf changes that name it.
//
// # Deviations from docs/contracts.md
//
// Transport passes *raftpb.Message (raft v3.7's protobuf-go messages must not be copied);
// SnapshotStore also carries ReportUnreachable/ReportSnapshot (the transport needs them);
// MsgSnap travels on its own connection rather than the peer's message connection; messages
// are marshalled with proto.Marshal (raftpb has no Marshal method any more).
package consensus
