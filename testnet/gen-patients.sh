#!/bin/sh
# Prints N generated patient records as JSON Lines, deterministic for a
# given seed, keyed by the patient's 18-digit resident ID number (valid
# GB 11643 check digit): name, diagnosis, hospital and admission date. The
# demo registers them under a resource that is not shared (NONE).
# usage: gen-patients.sh N [SEED]
set -eu
n=${1:-20}
seed=${2:-3}
awk -v n="$n" -v seed="$seed" 'BEGIN {
    srand(seed)
    split("王 李 张 刘 陈 杨 黄 赵 吴 周 徐 孙 马 朱 胡 郭 何 高 林 罗", surnames, " ")
    split("伟 芳 娜 秀英 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 秀兰 霞 平 刚 桂英 建华 志强 海燕", given, " ")
    split("2型糖尿病 原发性高血压 社区获得性肺炎 急性阑尾炎 冠状动脉粥样硬化性心脏病 慢性阻塞性肺疾病 腰椎间盘突出症 胆囊结石 脑梗死 甲状腺功能亢进症", diagnoses, " ")
    split("北京协和医院 北京大学第一医院 首都医科大学附属北京朝阳医院 北京天坛医院 中日友好医院 北京积水潭医院", hospitals, " ")
    split("110101 110102 110105 110106 110108 110111 110112 110114", areas, " ")
    split("7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2", w, " ")
    checks = "10X98765432"
    for (i = 1; i <= n; i++) {
        y = 1945 + int(rand() * 60); m = 1 + int(rand() * 12); d = 1 + int(rand() * 28)
        id17 = sprintf("%s%04d%02d%02d%03d", areas[1 + int(rand() * 8)], y, m, d, int(rand() * 1000))
        s = 0
        for (k = 1; k <= 17; k++) s += substr(id17, k, 1) * w[k]
        id = id17 substr(checks, (s % 11) + 1, 1)
        name = surnames[1 + int(rand() * 20)] given[1 + int(rand() * 26)]
        printf "{\"key\":\"%s\",\"fields\":{\"patient_id\":\"%s\",\"name\":\"%s\",\"diagnosis\":\"%s\",\"hospital\":\"%s\",\"admitted\":\"2026-%02d-%02d\"}}\n", \
            id, id, name, diagnoses[1 + int(rand() * 10)], hospitals[1 + int(rand() * 6)], 1 + int(rand() * 11), 1 + int(rand() * 28)
    }
}'
