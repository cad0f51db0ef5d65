import pkg from "../package.json" with { type: "json" };

export const LIFEBOAT_VERSION: string = pkg.version;
