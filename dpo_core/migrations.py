"""The store's schema as numbered migrations: (version, SQL), run in order on open by
`store.Store.migrate`. Never edit a released one: add the next number (tests open a store of
every older version and check that it upgrades without losing rows)."""

from __future__ import annotations

# Each migration is (version, sql). Never edit a released one: add the next number.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE datasets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            parent_id INTEGER REFERENCES datasets(id) ON DELETE SET NULL,
            recipe_json TEXT NOT NULL DEFAULT '{}',
            prompt_format TEXT NOT NULL DEFAULT '{}',
            description TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE pairs (
            id INTEGER PRIMARY KEY,
            dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            prompt TEXT NOT NULL,
            chosen TEXT NOT NULL,
            rejected TEXT NOT NULL,
            split TEXT NOT NULL DEFAULT 'train',
            source TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',
            flags TEXT NOT NULL DEFAULT '[]',
            note TEXT NOT NULL DEFAULT '',
            meta_json TEXT NOT NULL DEFAULT '{}',
            version INTEGER NOT NULL DEFAULT 1,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX pairs_by_dataset ON pairs(dataset_id, deleted, id);
        CREATE INDEX pairs_by_split ON pairs(dataset_id, split, id);
        CREATE VIRTUAL TABLE pairs_fts USING fts5(
            prompt, chosen, rejected, content='pairs', content_rowid='id'
        );
        CREATE TRIGGER pairs_ai AFTER INSERT ON pairs BEGIN
            INSERT INTO pairs_fts(rowid, prompt, chosen, rejected)
            VALUES (new.id, new.prompt, new.chosen, new.rejected);
        END;
        CREATE TRIGGER pairs_ad AFTER DELETE ON pairs BEGIN
            INSERT INTO pairs_fts(pairs_fts, rowid, prompt, chosen, rejected)
            VALUES ('delete', old.id, old.prompt, old.chosen, old.rejected);
        END;
        CREATE TRIGGER pairs_au AFTER UPDATE OF prompt, chosen, rejected ON pairs BEGIN
            INSERT INTO pairs_fts(pairs_fts, rowid, prompt, chosen, rejected)
            VALUES ('delete', old.id, old.prompt, old.chosen, old.rejected);
            INSERT INTO pairs_fts(rowid, prompt, chosen, rejected)
            VALUES (new.id, new.prompt, new.chosen, new.rejected);
        END;
        CREATE TABLE edits (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL,
            dataset_id INTEGER NOT NULL,
            at REAL NOT NULL,
            actor TEXT NOT NULL DEFAULT '',
            action TEXT NOT NULL,
            version INTEGER NOT NULL,
            before_json TEXT,
            after_json TEXT,
            undone INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX edits_by_pair ON edits(pair_id, id);
        CREATE INDEX edits_by_dataset ON edits(dataset_id, id);
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    (
        2,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL DEFAULT 'train',
            status TEXT NOT NULL DEFAULT 'queued',
            config_json TEXT NOT NULL DEFAULT '{}',
            dataset_id INTEGER,
            run_dir TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            pid INTEGER,
            pgid INTEGER,
            proc_start REAL,
            host TEXT NOT NULL DEFAULT '',
            heartbeat REAL,
            step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER NOT NULL DEFAULT 0,
            error_kind TEXT NOT NULL DEFAULT '',
            error_text TEXT NOT NULL DEFAULT '',
            resumed_from TEXT NOT NULL DEFAULT '',
            result_json TEXT NOT NULL DEFAULT '{}',
            read_only INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX runs_by_status ON runs(status, created);
        CREATE TABLE metrics (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            split TEXT NOT NULL DEFAULT 'train',
            key TEXT NOT NULL,
            value REAL,
            at REAL NOT NULL,
            UNIQUE(run_id, step, split, key)
        );
        CREATE INDEX metrics_by_run ON metrics(run_id, id);
        CREATE TABLE samples (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            completion TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX samples_by_run ON samples(run_id, id);
        """,
    ),
    (
        3,
        """
        CREATE TABLE evals (
            id INTEGER PRIMARY KEY,
            job_id TEXT,
            model_spec TEXT NOT NULL,
            run_id TEXT,
            dataset_id INTEGER,
            split TEXT NOT NULL DEFAULT '',
            method TEXT NOT NULL,
            metrics_json TEXT NOT NULL DEFAULT '{}',
            at REAL NOT NULL
        );
        CREATE TABLE eval_results (
            eval_id INTEGER NOT NULL,
            pair_id INTEGER,
            item TEXT NOT NULL DEFAULT '',
            chosen_score REAL,
            rejected_score REAL,
            correct INTEGER,
            detail_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX eval_results_by_eval ON eval_results(eval_id);
        CREATE TABLE votes (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            left_spec TEXT NOT NULL,
            right_spec TEXT NOT NULL,
            prompt TEXT NOT NULL,
            left_text TEXT NOT NULL,
            right_text TEXT NOT NULL,
            verdict TEXT NOT NULL,
            pair_id INTEGER,
            meta_json TEXT NOT NULL DEFAULT '{}'
        );
        """,
    ),
    (
        4,
        """
        CREATE TABLE sweeps (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            config_json TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'created',
            created REAL NOT NULL,
            job_id TEXT,
            baseline_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE sweep_trials (
            sweep_id TEXT NOT NULL,
            run_id TEXT,
            number INTEGER NOT NULL,
            params_json TEXT NOT NULL DEFAULT '{}',
            value REAL,
            status TEXT NOT NULL DEFAULT 'running',
            gain_json TEXT NOT NULL DEFAULT '{}',
            UNIQUE(sweep_id, number)
        );
        """,
    ),
    (
        5,
        """
        CREATE INDEX metrics_last ON metrics(run_id, key, id);
        """,
    ),
    (
        6,
        # the Data page's length sorts (edits.SORTS), keyset-paged like the id order
        """
        CREATE INDEX pairs_by_prompt_len ON pairs(dataset_id, deleted, length(prompt), id);
        CREATE INDEX pairs_by_chosen_len ON pairs(dataset_id, deleted, length(chosen), id);
        CREATE INDEX pairs_by_rejected_len ON pairs(dataset_id, deleted, length(rejected), id);
        """,
    ),
    (
        7,
        # Conversations stay conversations: message_fields has a bit per field (1 prompt,
        # 2 chosen, 4 rejected) whose column holds a JSON message list. Rows older code stored
        # as message JSON are marked; rows of system + input imports (the per-row system kept
        # in meta) become conversations with their system turn. Text with NUL stays as it is.
        # The data checks' incremental state: per-pair keys, MinHash bands, failures, and the
        # facets a dataset summary counts.
        """
        ALTER TABLE pairs ADD COLUMN message_fields INTEGER NOT NULL DEFAULT 0;
        UPDATE pairs SET message_fields = (CASE WHEN prompt LIKE '[{%' AND json_valid(prompt)
          THEN NOT EXISTS (SELECT 1 FROM json_each(prompt) e WHERE json_type(e.value, '$.role')
          IS NOT 'text' OR json_type(e.value, '$.content') IS NOT 'text') ELSE 0 END) + 2 * (
          CASE WHEN chosen LIKE '[{%' AND json_valid(chosen) THEN NOT EXISTS (SELECT 1 FROM
          json_each(chosen) e WHERE json_type(e.value, '$.role') IS NOT 'text' OR
          json_type(e.value, '$.content') IS NOT 'text') ELSE 0 END) + 4 * (CASE WHEN rejected
          LIKE '[{%' AND json_valid(rejected) THEN NOT EXISTS (SELECT 1 FROM json_each(rejected)
          e WHERE json_type(e.value, '$.role') IS NOT 'text' OR json_type(e.value, '$.content')
          IS NOT 'text') ELSE 0 END);
        UPDATE pairs SET message_fields = 7, meta_json = json_remove(meta_json, '$.system'),
          prompt = CASE WHEN meta_json ->> '$.system' != '' THEN json_array(json_object('role',
            'system', 'content', meta_json ->> '$.system'), json_object('role', 'user', 'content',
            prompt)) ELSE json_array(json_object('role', 'user', 'content', prompt)) END,
          chosen = json_array(json_object('role', 'assistant', 'content', chosen)),
          rejected = json_array(json_object('role', 'assistant', 'content', rejected))
        WHERE message_fields = 0 AND json_valid(meta_json)
          AND instr(prompt || chosen || rejected || meta_json, char(0)) = 0
          AND (json_type(meta_json, '$.system') = 'text' OR dataset_id IN (SELECT id FROM
               datasets WHERE json_valid(recipe_json)
               AND recipe_json ->> '$.import.shape' = 'system'));
        CREATE INDEX pairs_by_updated ON pairs(dataset_id, updated);
        CREATE TABLE pair_keys (pair_id INTEGER PRIMARY KEY, dataset_id INTEGER NOT NULL,
          split TEXT, exact INTEGER, pair_key INTEGER, direction INTEGER, prompt_key INTEGER,
          tag_chosen TEXT, tag_rejected TEXT, signature BLOB, bands BLOB, facets TEXT);
        CREATE INDEX pair_keys_exact ON pair_keys(dataset_id, exact);
        CREATE INDEX pair_keys_pair ON pair_keys(dataset_id, pair_key);
        CREATE INDEX pair_keys_prompt ON pair_keys(dataset_id, prompt_key);
        CREATE TABLE pair_bands (dataset_id INTEGER NOT NULL, band INTEGER NOT NULL, pair_id
          INTEGER NOT NULL, PRIMARY KEY (dataset_id, band, pair_id)) WITHOUT ROWID;
        CREATE TABLE check_hits (dataset_id INTEGER NOT NULL, name TEXT NOT NULL, pair_id
          INTEGER NOT NULL, PRIMARY KEY (dataset_id, name, pair_id)) WITHOUT ROWID;
        CREATE TABLE check_state (dataset_id INTEGER PRIMARY KEY, synced REAL NOT NULL,
          state TEXT NOT NULL DEFAULT '{}', summary TEXT NOT NULL DEFAULT '{}',
          sample TEXT NOT NULL DEFAULT '{}');
        """,
    ),
    (
        8,
        # the job watchdog: when a job's step last moved, how long its steps take, and a cancel
        # asked for (a job killed while cancelling ends cancelled, not lost)
        """
        ALTER TABLE runs ADD COLUMN progressed REAL;
        ALTER TABLE runs ADD COLUMN step_seconds REAL;
        ALTER TABLE runs ADD COLUMN cancel_requested REAL;
        """,
    ),
    (
        9,
        # team annotation: accounts and their sessions (tokens stored hashed), tasks over a
        # frozen list of pairs, one judgment per annotator per pair, claims that keep a pair
        # from going to more than k annotators at once, and the owner's adjudications
        """
        CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
          role TEXT NOT NULL, password_hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
          failed_logins INTEGER NOT NULL DEFAULT 0, locked_until REAL, created REAL NOT NULL);
        CREATE TABLE account_sessions (token_hash TEXT PRIMARY KEY, account_id INTEGER NOT NULL,
          created REAL NOT NULL, expires REAL NOT NULL);
        CREATE TABLE annotation_tasks (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
          dataset_id INTEGER, dataset_name TEXT NOT NULL, check_name TEXT,
          guidelines TEXT NOT NULL DEFAULT '', k INTEGER NOT NULL,
          ask_strength INTEGER NOT NULL DEFAULT 0, ask_reason INTEGER NOT NULL DEFAULT 0,
          allow_edit INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'open',
          status_reason TEXT NOT NULL DEFAULT '', created REAL NOT NULL, created_by TEXT);
        CREATE TABLE task_pairs (task_id INTEGER NOT NULL, pair_id INTEGER NOT NULL,
          position INTEGER NOT NULL, PRIMARY KEY (task_id, pair_id));
        CREATE INDEX task_pairs_order ON task_pairs(task_id, position);
        CREATE TABLE judgments (id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL,
          pair_id INTEGER NOT NULL, account_id INTEGER NOT NULL, annotator TEXT NOT NULL,
          label TEXT NOT NULL, strength TEXT, reason TEXT NOT NULL DEFAULT '', edit TEXT,
          swapped INTEGER NOT NULL, at REAL NOT NULL, UNIQUE (task_id, pair_id, account_id));
        CREATE TABLE task_claims (task_id INTEGER NOT NULL, pair_id INTEGER NOT NULL,
          account_id INTEGER NOT NULL, until REAL NOT NULL,
          PRIMARY KEY (task_id, pair_id, account_id));
        CREATE TABLE adjudications (task_id INTEGER NOT NULL, pair_id INTEGER NOT NULL,
          label TEXT NOT NULL, decided_by TEXT NOT NULL, at REAL NOT NULL,
          PRIMARY KEY (task_id, pair_id));
        """,
    ),
]
