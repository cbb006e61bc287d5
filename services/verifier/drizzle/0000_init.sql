CREATE TABLE `comparisons` (
	`tournament_id` text NOT NULL,
	`idx` integer NOT NULL,
	`a` integer NOT NULL,
	`b` integer NOT NULL,
	`p_a` real NOT NULL,
	`phase` integer NOT NULL,
	`judged_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	PRIMARY KEY(`tournament_id`, `idx`),
	FOREIGN KEY (`tournament_id`) REFERENCES `tournaments`(`id`) ON UPDATE no action ON DELETE cascade,
	CONSTRAINT "comparisons_pair_check" CHECK(a >= 0 and b >= 0 and a <> b and idx >= 0),
	CONSTRAINT "comparisons_p_a_check" CHECK(p_a >= 0 and p_a <= 1),
	CONSTRAINT "comparisons_phase_check" CHECK(phase in (1, 2))
);
--> statement-breakpoint
CREATE INDEX `comparisons_judged_at_idx` ON `comparisons` (`judged_at`);--> statement-breakpoint
CREATE TABLE `tournaments` (
	`id` text PRIMARY KEY NOT NULL,
	`question` text NOT NULL,
	`candidates` text NOT NULL,
	`judge` text NOT NULL,
	`budget` integer NOT NULL,
	`seed` integer NOT NULL,
	`state` text DEFAULT 'sampling' NOT NULL,
	`ranking` text,
	`scores` text,
	`error` text,
	`model_id` text,
	`created_at` integer DEFAULT (cast(unixepoch('subsec') * 1000 as integer)) NOT NULL,
	`finished_at` integer,
	CONSTRAINT "tournaments_judge_check" CHECK(judge in ('pairwise', 'pointwise', 'tests')),
	CONSTRAINT "tournaments_state_check" CHECK(state in ('sampling', 'judging', 'done', 'failed')),
	CONSTRAINT "tournaments_budget_check" CHECK(budget >= 0),
	CONSTRAINT "tournaments_done_check" CHECK(state <> 'done' or (ranking is not null and scores is not null)),
	CONSTRAINT "tournaments_failed_check" CHECK(state <> 'failed' or error is not null)
);
--> statement-breakpoint
CREATE INDEX `tournaments_created_idx` ON `tournaments` (`created_at`);--> statement-breakpoint
CREATE INDEX `tournaments_state_created_idx` ON `tournaments` (`state`,`created_at`);