import * as fs from "fs";
import { describe, expect, it } from "vitest";
import { configRows, README, readmeWithTable } from "../../scripts/config-docs";

describe("README config table", () => {
    it("documents every key of the schema, as generated (run `npm run docs` after changing config.ts)", () => {
        const readme = fs.readFileSync(README, "utf8");
        expect(readme).toBe(readmeWithTable(readme));
    });
    it("has a meaning for every key", () => {
        expect(configRows().filter((r) => !r[3]).map((r) => r[0])).toEqual([]);
        expect(configRows().length).toBeGreaterThan(90);
    });
});
