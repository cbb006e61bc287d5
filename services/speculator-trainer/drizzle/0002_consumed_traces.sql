CREATE TABLE `consumed_traces` (
	`model_id` text NOT NULL,
	`stream_seq` integer NOT NULL,
	PRIMARY KEY(`model_id`, `stream_seq`)
);
