#!/bin/bash
P=27102; O=/tmp/bounces/captured/exim
for s in u1 u2 u3 u4 u5 h1 mv na m1 s1 s2 x1 tb bl b2 b3 b4 b5 sp s3 vi ce pv au sf tl rl rj sx se sy; do
  python3 submit.py $P $O $s $s@rcpt.test --wait 20
done
python3 submit.py $P $O multi_u1_m1_bl u1@rcpt.test,m1@rcpt.test,bl@rcpt.test --wait 20
python3 submit.py $P $O multi_ok_u2 ok@rcpt.test,u2@rcpt.test --wait 20
python3 submit.py $P $O banner a1@banner.test,a2@banner.test --wait 20
python3 submit.py $P $O mailrej c1@mailrej.test --wait 20
python3 submit.py $P $O localunknown nobody1@local.exim.test --wait 20
python3 submit.py $P $O localquota quota@local.exim.test --wait 20 --big
python3 submit.py $P $O nodns d1@nodns.test --wait 20
for s in m2 tc ra; do python3 submit.py $P $O $s $s@rcpt.test --wait 75 --count 2; done
python3 submit.py $P $O down d1@down.test --wait 75 --count 2
