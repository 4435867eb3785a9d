#!/bin/bash
P=27103; O=/tmp/bounces/captured/opensmtpd
for s in u2 u3 u4 u5 h1 mv na m1 s1 x1 tb bl b2 b3 b4 sp vi ce au sf tl rl rj sx sy; do
  python3 submit.py $P $O $s $s@rcpt.test --wait 20
done
python3 submit.py $P $O multi_u1_m1_bl u1@rcpt.test,m1@rcpt.test,bl@rcpt.test --wait 20
python3 submit.py $P $O banner a1@banner.test --wait 20
python3 submit.py $P $O mailrej c1@mailrej.test --wait 20
python3 submit.py $P $O nodns d1@nodns.test --wait 60 --count 2
for s in m2 tc; do python3 submit.py $P $O $s $s@rcpt.test --wait 75 --count 2; done
python3 submit.py $P $O down d1@down.test --wait 75 --count 2
