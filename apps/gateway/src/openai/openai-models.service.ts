/** /v1/models answers: the one model the policy serves, with its version and context length. */
import { Injectable } from '@nestjs/common';
import type { OpenAiModel, OpenAiModelList, PolicyInfo } from '@flywheel/contracts';
import { OpenAiError, toOpenAiError } from '../http/openai-error';
import { PolicyClient } from './policy.client';

@Injectable()
export class OpenAiModelsService {
  constructor(private readonly policy: PolicyClient) {}

  async list(): Promise<OpenAiModelList> {
    return { object: 'list', data: [this.modelOf(await this.info())] };
  }

  async retrieve(id: string): Promise<OpenAiModel> {
    const info = await this.info();
    if (id !== info.model) {
      throw new OpenAiError(404, 'invalid_request_error', `The model \`${id}\` does not exist or you do not have access to it.`, 'model', 'model_not_found');
    }
    return this.modelOf(info);
  }

  private async info(): Promise<PolicyInfo> {
    try {
      return await this.policy.info();
    } catch (err) {
      throw toOpenAiError(err);
    }
  }

  private modelOf(info: PolicyInfo): OpenAiModel {
    return {
      id: info.model,
      object: 'model',
      created: info.loadedAt,
      owned_by: 'flywheel',
      policy_version: info.policyVersion,
      context_length: info.contextLength,
      dtype: info.dtype,
      ...(info.weightTypes ? { weight_types: info.weightTypes } : {}),
    };
  }
}
