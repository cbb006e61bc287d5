// The suffix drafter's failures: bad input to a tree (token ids, misuse of the live/whole-document
// modes, a corrupt tree found while evicting) and bad options (the message names the key).

export class SuffixTreeError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SuffixTreeError";
  }
}

export class SuffixOptionsError extends Error {
  constructor(
    readonly key: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`suffix drafter option ${key}: ${message}`, options);
    this.name = "SuffixOptionsError";
  }
}
