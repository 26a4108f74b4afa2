#!/bin/sh
# Prints N generated enterprise credit ratings as JSON Lines, deterministic
# for a given seed, keyed by the company's unified social credit code
# (GB 32100: 18 characters, the organization code inside with its GB 11714
# check digit, the last character a check over the first 17), with a
# company name, a tax credit rating (A, B, M, C or D) and the assessment.
# usage: gen-credit.sh N [SEED]
set -eu
n=${1:-100}
seed=${2:-11}
awk -v n="$n" -v seed="$seed" 'BEGIN {
    srand(seed)
    # The 31 characters of a credit code, in the order of their values.
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    split("1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28", cw, " ")
    split("3 7 9 10 5 8 4 2", ow, " ")
    split("110101 110102 110105 110106 110108 110111 110112 110114 110115 110113", areas, " ")
    split("华信 恒达 中科 金源 瑞丰 鼎盛 博远 泰和 宏图 天成 嘉禾 兴业 鸿运 正通 安泰 永信 明德 汇智 新锐 润泽 京诚 盛世 东方 远航", marks, " ")
    split("科技 商贸 建筑工程 餐饮管理 物流 医药 文化传媒 机械设备 电子 房地产开发 环保科技 信息技术", trades, " ")
    split("有限公司 有限公司 有限公司 股份有限公司", forms, " ")
    # Ratings weighted roughly as published: most companies rate B.
    split("A A A B B B B B B M M C D", ratings, " ")
    for (i = 1; i <= n; i++) {
        # The organization code: eight digits, or "MA" and six characters for
        # codes issued since 2015, then its GB 11714 check digit.
        if (rand() < 0.6) {
            body = "MA"
            for (k = 0; k < 6; k++) body = body substr(alphabet, 1 + int(rand() * 31), 1)
        } else {
            body = sprintf("%08d", int(rand() * 100000000))
        }
        s = 0
        for (k = 1; k <= 8; k++) s += value(substr(body, k, 1)) * ow[k]
        c = 11 - s % 11
        org = body (c == 10 ? "X" : c == 11 ? "0" : c)
        code17 = "91" areas[1 + int(rand() * 10)] org
        s = 0
        for (k = 1; k <= 17; k++) s += (index(alphabet, substr(code17, k, 1)) - 1) * cw[k]
        code = code17 substr(alphabet, 1 + (31 - s % 31) % 31, 1)
        name = "北京" marks[1 + int(rand() * 24)] marks[1 + int(rand() * 24)] trades[1 + int(rand() * 12)] forms[1 + int(rand() * 4)]
        printf "{\"key\":\"%s\",\"fields\":{\"credit_code\":\"%s\",\"company\":\"%s\",\"rating\":\"%s\",\"year\":\"2025\",\"assessed\":\"2026-04-%02d\"}}\n", \
            code, code, name, ratings[1 + int(rand() * 13)], 1 + int(rand() * 28)
    }
}
# GB 11714 values: digits as such, letters A..Z as 10..35.
function value(ch) {
    if (ch ~ /[0-9]/) return ch + 0
    return index("ABCDEFGHIJKLMNOPQRSTUVWXYZ", ch) + 9
}'
