// Chat templates: the Jinja template a chat model ships (tokenizer_config.json's `chat_template`, or
// chat_template.jinja beside it as transformers >= 4.43 saves it), rendered with @huggingface/jinja,
// the same interpreter transformers.js uses, so prompts match what the model was trained on.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { InvalidArgumentError } from "@specloop/errors";
import { ModelFileError, UnsupportedModelError } from "../errors.js";
import type { Json } from "../loader/json-file.js";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatRenderOptions {
  /** End with the assistant turn's opening, so generation answers (default true). */
  addGenerationPrompt?: boolean;
  /** Further template variables some templates read (e.g. `enable_thinking` for Qwen3). */
  variables?: Readonly<Record<string, unknown>>;
}

export interface ChatTemplate {
  /** Where the template came from, for errors and logs. */
  readonly source: string;
  render(messages: readonly ChatMessage[], options?: ChatRenderOptions): string;
}

export interface ChatSpecialTokens {
  bosToken: string | undefined;
  eosToken: string | undefined;
}

class JinjaChatTemplate implements ChatTemplate {
  readonly source: string;
  readonly #template: Template;
  readonly #special: ChatSpecialTokens;

  constructor(text: string, source: string, special: ChatSpecialTokens) {
    this.source = source;
    this.#special = special;
    try {
      this.#template = new Template(text);
    } catch (err) {
      throw new ModelFileError(source, `chat template does not parse: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  render(messages: readonly ChatMessage[], options: ChatRenderOptions = {}): string {
    for (const [i, m] of messages.entries()) {
      if (typeof m?.role !== "string" || typeof m.content !== "string") {
        throw new InvalidArgumentError(`messages[${i}]`, "needs a string role and a string content");
      }
    }
    try {
      return this.#template.render({
        ...options.variables,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: this.#special.bosToken ?? "",
        eos_token: this.#special.eosToken ?? "",
      });
    } catch (err) {
      // Templates refuse bad conversations themselves (raise_exception("roles must alternate ...")).
      throw new InvalidArgumentError(
        "messages",
        `chat template (${this.source}): ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }
}

/** The template text from tokenizer_config.json's chat_template: a string, or a list of named ones. */
function templateFromConfig(value: unknown, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named = value as { name?: unknown; template?: unknown }[];
    const pick = named.find((t) => t?.name === "default") ?? named[0];
    if (typeof pick?.template === "string") return pick.template;
  }
  throw new ModelFileError(file, "chat_template is neither a string nor a list of {name, template}");
}

/**
 * The model's chat template, or undefined when it has none (a base model). chat_template.jinja in
 * `dir` wins over tokenizer_config.json, as in transformers.
 */
export async function loadChatTemplate(
  dir: string,
  tokenizerConfig: Json,
  special: ChatSpecialTokens,
): Promise<ChatTemplate | undefined> {
  const jinjaPath = join(dir, "chat_template.jinja");
  let text: string | undefined;
  try {
    text = await readFile(jinjaPath, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new ModelFileError(jinjaPath, `cannot read: ${(err as Error).message}`, { cause: err });
    }
  }
  if (text !== undefined) return new JinjaChatTemplate(text, jinjaPath, special);
  const configPath = join(dir, "tokenizer_config.json");
  const fromConfig = templateFromConfig(tokenizerConfig.chat_template, configPath);
  return fromConfig === undefined ? undefined : new JinjaChatTemplate(fromConfig, configPath, special);
}

/** A chat template from its text (tests, templates supplied by configuration). */
export function chatTemplateFromText(text: string, source: string, special: ChatSpecialTokens): ChatTemplate {
  return new JinjaChatTemplate(text, source, special);
}

/** The model's chat template, or an error a caller asking for chat can show as is. */
export function requireChatTemplate(model: {
  modelId: string;
  chatTemplate: ChatTemplate | undefined;
}): ChatTemplate {
  if (model.chatTemplate === undefined) {
    throw new UnsupportedModelError(
      "chat_template",
      `model ${model.modelId} has no chat template (a base model): send a plain prompt instead of messages`,
    );
  }
  return model.chatTemplate;
}
