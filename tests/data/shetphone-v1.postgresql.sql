CREATE TABLE schema_version (
	id INTEGER NOT NULL,
	version INTEGER NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE calls (
	call_sid VARCHAR(64) NOT NULL,
	direction VARCHAR(8) NOT NULL,
	number VARCHAR(64) NOT NULL,
	from_number VARCHAR(255) NOT NULL,
	to_number VARCHAR(255) NOT NULL,
	client VARCHAR(128),
	started_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	dial_status VARCHAR(16),
	status VARCHAR(16) NOT NULL,
	answered BOOLEAN NOT NULL,
	duration INTEGER NOT NULL,
	PRIMARY KEY (call_sid)
);

CREATE INDEX calls_by_start ON calls (started_at);

CREATE INDEX calls_by_number ON calls (number, started_at, call_sid);

CREATE INDEX calls_by_client ON calls (client, started_at, call_sid);

CREATE TABLE legs (
	call_sid VARCHAR(64) NOT NULL,
	root_call_sid VARCHAR(64) NOT NULL,
	parent_call_sid VARCHAR(64),
	status VARCHAR(16) NOT NULL,
	status_rank INTEGER NOT NULL,
	sequence INTEGER,
	answered BOOLEAN NOT NULL,
	duration INTEGER NOT NULL,
	from_number VARCHAR(255),
	to_number VARCHAR(255),
	event_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	PRIMARY KEY (call_sid),
	FOREIGN KEY(root_call_sid) REFERENCES calls (call_sid) ON DELETE CASCADE
);

CREATE INDEX legs_by_root ON legs (root_call_sid);

CREATE INDEX legs_by_rank ON legs (status_rank);

CREATE TABLE recordings (
	recording_sid VARCHAR(64) NOT NULL,
	call_sid VARCHAR(64) NOT NULL,
	twilio_url VARCHAR(1024) NOT NULL,
	duration INTEGER NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	PRIMARY KEY (recording_sid),
	FOREIGN KEY(call_sid) REFERENCES calls (call_sid) ON DELETE CASCADE
);

CREATE INDEX recordings_by_call ON recordings (call_sid);
