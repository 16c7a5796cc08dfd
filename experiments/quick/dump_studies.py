"""Top trials (val_acc, params, FLOPs) and final runs of stored quick studies.
python3 dump_studies.py STUDY.db ..."""
import sqlite3, json, sys, glob
for f in sys.argv[1:]:
    c=sqlite3.connect(f)
    cfg=json.loads(c.execute("select config_json from study").fetchone()[0])
    b=cfg.get("budget",{})
    rows=c.execute("select number,status,val_acc,params,flops,budget_json,started_at,finished_at from trials order by number").fetchall()
    ok=[r for r in rows if r[1]=="ok"]
    print(f"== {f}: seed {cfg.get('seed')} budget ep{b.get('epochs')} frac{b.get('data_fraction')} w{b.get('width')} n={len(rows)} ok={len(ok)} constraints={cfg.get('constraints')}")
    top=sorted(ok,key=lambda r:-r[2])[:6]
    for r in top: print(f"   t{r[0]} val {r[2]:.4f} params {r[3]} MF {r[4]/1e6:.2f}")
    for fr in c.execute("select trial_number,budget_json,val_acc,test_acc,params,metrics_json from final_runs"):
        bj=json.loads(fr[1]); m=json.loads(fr[5] or '{}')
        print(f"   FINAL t{fr[0]} ep{bj.get('epochs')} w{bj.get('width')} val {fr[2]} test {fr[3]} params {fr[4]} secs {m.get('train_seconds')}")
