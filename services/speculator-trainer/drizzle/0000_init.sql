CREATE TABLE `speculator_versions` (
	`id` text PRIMARY KEY NOT NULL,
	`model_id` text NOT NULL,
	`parent_id` text,
	`status` text DEFAULT 'candidate' NOT NULL,
	`architecture` text NOT NULL,
	`samples_seen` integer DEFAULT 0 NOT NULL,
	`training_steps` integer DEFAULT 0 NOT NULL,
	`offline_metrics` text,
	`online_metrics` text,
	`sha256` text NOT NULL,
	`size_bytes` integer NOT NULL,
	`pinned` integer DEFAULT false NOT NULL,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`promoted_at` integer,
	`promoted_by` text,
	`status_reason` text,
	FOREIGN KEY (`parent_id`) REFERENCES `speculator_versions`(`id`) ON UPDATE no action ON DELETE set null,
	CONSTRAINT "speculator_versions_status_check" CHECK(status in ('candidate', 'canary', 'live', 'retired', 'rejected')),
	CONSTRAINT "speculator_versions_pinned_live_check" CHECK(pinned = 0 or status = 'live'),
	CONSTRAINT "speculator_versions_sha256_check" CHECK(length(sha256) = 64),
	CONSTRAINT "speculator_versions_counts_check" CHECK(samples_seen >= 0 and training_steps >= 0 and size_bytes >= 0)
);
--> statement-breakpoint
CREATE INDEX `speculator_versions_model_status_idx` ON `speculator_versions` (`model_id`,`status`,`created_at`);--> statement-breakpoint
CREATE INDEX `speculator_versions_model_created_idx` ON `speculator_versions` (`model_id`,`created_at`);--> statement-breakpoint
CREATE UNIQUE INDEX `speculator_versions_one_live_idx` ON `speculator_versions` (`model_id`) WHERE status = 'live';--> statement-breakpoint
CREATE UNIQUE INDEX `speculator_versions_one_canary_idx` ON `speculator_versions` (`model_id`) WHERE status = 'canary';--> statement-breakpoint
CREATE TABLE `trainer_state` (
	`model_id` text PRIMARY KEY NOT NULL,
	`config` text NOT NULL,
	`config_updated_by` text,
	`config_updated_at` integer,
	`paused` integer DEFAULT false NOT NULL,
	`paused_by` text,
	`paused_at` integer,
	`last_trace_seq` integer DEFAULT 0 NOT NULL,
	`traces_consumed` integer DEFAULT 0 NOT NULL,
	`traces_rejected` integer DEFAULT 0 NOT NULL,
	`training_steps` integer DEFAULT 0 NOT NULL,
	`recent_loss` real,
	`updated_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	CONSTRAINT "trainer_state_counts_check" CHECK(last_trace_seq >= 0 and traces_consumed >= 0 and traces_rejected >= 0)
);
--> statement-breakpoint
CREATE TABLE `version_events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`version_id` text NOT NULL,
	`model_id` text NOT NULL,
	`action` text NOT NULL,
	`from_status` text,
	`to_status` text,
	`actor` text NOT NULL,
	`reason` text DEFAULT '' NOT NULL,
	`at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	FOREIGN KEY (`version_id`) REFERENCES `speculator_versions`(`id`) ON UPDATE no action ON DELETE cascade,
	CONSTRAINT "version_events_action_check" CHECK(action in ('create', 'canary', 'promote', 'rollback', 'retire', 'reject', 'pin', 'unpin'))
);
--> statement-breakpoint
CREATE INDEX `version_events_version_idx` ON `version_events` (`version_id`,`id`);--> statement-breakpoint
CREATE INDEX `version_events_model_idx` ON `version_events` (`model_id`,`id`);