ALTER TABLE `comparisons` ADD `invented` integer DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `comparisons` ADD `published_at` integer;--> statement-breakpoint
CREATE INDEX `comparisons_unpublished_idx` ON `comparisons` (`tournament_id`,`idx`) WHERE published_at is null and invented = 0;--> statement-breakpoint
ALTER TABLE `tournaments` ADD `requested_by` text;--> statement-breakpoint
ALTER TABLE `tournaments` ADD `real_verdicts` integer;--> statement-breakpoint
ALTER TABLE `tournaments` ADD `size_bytes` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX `tournaments_finished_idx` ON `tournaments` (`finished_at`);--> statement-breakpoint
-- Verdicts judged before this migration were published when their tournament finished: not spooled again.
UPDATE `comparisons` SET `published_at` = `judged_at`;--> statement-breakpoint
UPDATE `tournaments` SET `size_bytes` = length(cast(`question` as blob)) + length(cast(`candidates` as blob));
