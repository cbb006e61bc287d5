import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { InvalidArgumentError } from "@specloop/errors";
import { ModelFileError, UnsupportedModelError } from "../errors.js";
import { loadModelDir } from "../loader/hf-model.js";
import { chatTemplateFromText, loadChatTemplate, requireChatTemplate } from "./chat-template.js";

const TARGET = new URL("../../../../models/tiny-code/", import.meta.url).pathname;

const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const LLAMA3 =
  "{{ bos_token }}{% for message in messages %}" +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + eos_token }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

const SPECIAL = { bosToken: "<|endoftext|>", eosToken: "<|endoftext|>" };

describe("tokenizer chat-template", () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), "specloop-chat-"));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test("tokenizer chat-template - renders a ChatML template from a model dir's tokenizer_config.json", async () => {
    const dir = join(tmp, "tiny-chat");
    await cp(TARGET, dir, { recursive: true });
    const cfgPath = join(dir, "tokenizer_config.json");
    const cfg = JSON.parse(await readFile(cfgPath, "utf8")) as Record<string, unknown>;
    await writeFile(cfgPath, JSON.stringify({ ...cfg, chat_template: CHATML }));

    const model = await loadModelDir(dir);
    assert.equal(model.modelId, "tiny-chat");
    const template = requireChatTemplate(model);
    assert.equal(template.source, cfgPath);
    const messages = [
      { role: "system", content: "You write C." },
      { role: "user", content: "Say hi." },
    ];
    assert.equal(
      template.render(messages),
      "<|im_start|>system\nYou write C.<|im_end|>\n<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n",
    );
    assert.equal(
      template.render(messages, { addGenerationPrompt: false }),
      "<|im_start|>system\nYou write C.<|im_end|>\n<|im_start|>user\nSay hi.<|im_end|>\n",
    );
    // The rendered prompt tokenizes like any text.
    assert.ok(model.tokenizer.encode(template.render(messages), { addSpecialTokens: false }).length > 10);
  });

  test("tokenizer chat-template - passes bos and eos tokens; a template's own refusal is an InvalidArgumentError", () => {
    const t = chatTemplateFromText(LLAMA3, "test", SPECIAL);
    assert.equal(
      t.render([{ role: "user", content: "  hi  " }]),
      "<|endoftext|><|start_header_id|>user<|end_header_id|>\n\nhi<|endoftext|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    );
    assert.throws(
      () =>
        t.render([
          { role: "user", content: "a" },
          { role: "user", content: "b" },
        ]),
      (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.field, "messages");
        assert.match(err.message, /chat template \(test\): Conversation roles must alternate/);
        return true;
      },
    );
    assert.throws(
      () => t.render([{ role: "user", content: 3 as unknown as string }]),
      /messages\[0\]: needs a string role and a string content/,
    );
  });

  test("tokenizer chat-template - extra variables reach the template", () => {
    const t = chatTemplateFromText(
      "{% if enable_thinking %}think{% else %}answer{% endif %}",
      "test",
      SPECIAL,
    );
    assert.equal(t.render([], { variables: { enable_thinking: true } }), "think");
    assert.equal(t.render([]), "answer");
  });

  test("tokenizer chat-template - chat_template.jinja wins; a list of named templates picks default", async () => {
    const dir = join(tmp, "jinja");
    await mkdir(dir);
    await writeFile(join(dir, "chat_template.jinja"), "from-file:{{ messages[0].content }}");
    const fromFile = await loadChatTemplate(dir, { chat_template: CHATML }, SPECIAL);
    assert.equal(fromFile?.source, join(dir, "chat_template.jinja"));
    assert.equal(fromFile?.render([{ role: "user", content: "x" }]), "from-file:x");

    const named = await loadChatTemplate(
      TARGET,
      {
        chat_template: [
          { name: "tool_use", template: "tools" },
          { name: "default", template: "default" },
        ],
      },
      SPECIAL,
    );
    assert.equal(named?.render([]), "default");
  });

  test("tokenizer chat-template - a base model has none, and asking it for chat is a clear error", async () => {
    const model = await loadModelDir(TARGET);
    assert.equal(model.chatTemplate, undefined);
    assert.throws(
      () => requireChatTemplate(model),
      (err: unknown) => {
        assert.ok(err instanceof UnsupportedModelError);
        assert.equal(err.field, "chat_template");
        assert.match(err.message, /model tiny-code has no chat template .*send a plain prompt/);
        return true;
      },
    );
  });

  test("tokenizer chat-template - a template that does not parse names its file", async () => {
    await assert.rejects(
      loadChatTemplate(TARGET, { chat_template: "{% for m in messages %}" }, SPECIAL),
      (err: unknown) => {
        assert.ok(err instanceof ModelFileError);
        assert.equal(err.file, join(TARGET, "tokenizer_config.json"));
        assert.match(err.message, /chat template does not parse/);
        return true;
      },
    );
    await assert.rejects(
      loadChatTemplate(TARGET, { chat_template: 42 }, SPECIAL),
      /chat_template is neither a string nor a list/,
    );
  });
});
