// The Python copy of the facts (images/common/cotvr_facts.py, for the programs inside the images)
// against config/facts.ts: run the module, compare what it prints.
import { execFileSync } from "child_process";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { ACT_MARGIN, CHARTQA_ROWS, RESERVE_GIB, stepsPerEpoch } from "../../config/facts";

const PY_FACTS = path.join(__dirname, "../../images/common/cotvr_facts.py");

describe("images/common/cotvr_facts.py", () => {
    // rows, batch, accumulation, max steps: the shipped variants, partial batches, caps above and below.
    const cases: [number, number, number, number | null][] = [
        [28299, 16, 1, null], [28299, 2, 8, null], [28299, 8, 2, null], [28299, 16, 1, 2], [28299, 2, 8, 5000],
        [1000, 7, 3, null], [15, 16, 1, null], [16, 16, 1, null], [100, 1, 1, 100], [2500, 3, 4, 1],
    ];
    const py = JSON.parse(execFileSync("python3", [PY_FACTS, JSON.stringify(cases)], { encoding: "utf8" }));

    it("has config/facts.ts's ChartQA row counts", () => {
        expect(py.CHARTQA_ROWS).toEqual(CHARTQA_ROWS);
    });
    it("has config/facts.ts's memory margin and reserve (the benchmark's auto micro-batch)", () => {
        expect([py.ACT_MARGIN, py.RESERVE_GIB]).toEqual([ACT_MARGIN, RESERVE_GIB]);
    });
    it("counts steps per epoch as config/facts.ts does (torchtune 0.6.1: drop_last batches // accumulation, capped)", () => {
        const ts = cases.map(([rows, batchSize, gradientAccumulationSteps, maxStepsPerEpoch]) =>
            stepsPerEpoch(rows, { batchSize, gradientAccumulationSteps, maxStepsPerEpoch }));
        expect(py.steps_per_epoch).toEqual(ts);
        expect(ts.slice(0, 2)).toEqual([1768, 1768]);
    });
});
