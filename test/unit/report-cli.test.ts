import { describe, expect, it } from "vitest";
import { hours, jobState, jobTable } from "../../scripts/status-core";
import { LABELS } from "../../contract";

const job = (status: Record<string, unknown>, stage = "train", variant = "lora-11b") =>
    ({ metadata: { name: `blog-${stage}-${variant}-0123abcd`, labels: { [LABELS.stage]: stage, [LABELS.variant]: variant } }, status });

describe("npm run report", () => {
    it("reads Job states from their conditions", () => {
        expect(jobState(job({ conditions: [{ type: "Complete", status: "True" }] }))).toBe("complete");
        expect(jobState(job({ conditions: [{ type: "Failed", status: "True" }] }))).toBe("failed");
        expect(jobState(job({ active: 1 }))).toBe("running");
        expect(jobState(job({}))).toBe("pending");
    });
    it("computes hours from start and completion times", () => {
        expect(hours(job({ startTime: "2026-01-01T00:00:00Z", completionTime: "2026-01-01T01:30:00Z" }))).toBe("1.50");
        expect(hours(job({ startTime: "2026-01-01T00:00:00Z" }), Date.parse("2026-01-01T02:00:00Z"))).toBe("2.00");
        expect(hours(job({}))).toBe("-");
    });
    it("prints a Markdown table of the run's Jobs", () => {
        const t = jobTable([job({ startTime: "2026-01-01T00:00:00Z", completionTime: "2026-01-01T00:06:00Z", conditions: [{ type: "Complete", status: "True" }] })]);
        expect(t.split("\n")[2]).toBe("| train | lora-11b | complete | 0.10 | blog-train-lora-11b-0123abcd |");
    });
});
