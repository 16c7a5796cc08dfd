"""Write hand_chains.json: two chain genomes of the global space, from their ops."""
import json,sys
def chain(ops):
    nodes=[{"id":f"n{i}","op":o} for i,o in enumerate(ops)]
    ids=["in"]+[n["id"] for n in nodes]+["out"]
    edges=[{"src":a,"dst":b,"enabled":True} for a,b in zip(ids,ids[1:])]
    return {"nodes":nodes,"edges":edges,"schema":"nasforge.global/1"}
gs=[chain(["conv3N_pad","avgpool2","conv3N_pad","conv3N_pad","avgpool2","conv3N","conv5N"]),
    chain(["conv3N","conv5N","conv3N_pad","avgpool2","conv5N","conv5N","maxpool2","avgpool2"])]
json.dump(gs,open("hand_chains.json","w"))
