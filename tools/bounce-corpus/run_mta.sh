#!/bin/bash
# run_mta.sh PORT MTA : every scenario through the MTA on PORT
P=$1; M=$2; O=/tmp/bounces/captured/$M
for s in u1 u2 u3 u4 u5 h1 mv na m1 m2 s1 s2 x1 tb bl b2 b3 b4 b5 sp s3 vi ce pv au sf tl rl rj sx se sy tc ra tf; do
  python3 submit.py $P $O $s $s@rcpt.test --wait ${W:-25}
done
python3 submit.py $P $O multi_u1_m1_bl u1@rcpt.test,m1@rcpt.test,bl@rcpt.test --wait ${W:-25}
python3 submit.py $P $O multi_ok_u2 ok@rcpt.test,u2@rcpt.test --wait ${W:-25}
python3 submit.py $P $O multi_sp_ok sp@rcpt.test,ok@rcpt.test --wait ${W:-25}
python3 submit.py $P $O banner a1@banner.test,a2@banner.test --wait ${W:-25}
python3 submit.py $P $O mailrej c1@mailrej.test --wait ${W:-25}
python3 submit.py $P $O down d1@down.test --wait ${W:-40}
python3 submit.py $P $O nodns d1@nodns.test --wait ${W:-40}
